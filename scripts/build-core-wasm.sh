#!/usr/bin/env bash
# Builds syncoord-core for wasm32-unknown-unknown with whichever toolchain
# scripts/install-wasm-toolchain.sh set up (it runs first; cheap when all is
# present). Extra arguments go to cargo, e.g. `scripts/build-core-wasm.sh --release`.
# SYNCOORD_WASM_TOOLCHAIN=debian forces Debian's toolchain (see the installer).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
bash "$ROOT/scripts/install-wasm-toolchain.sh"
# shellcheck source=/dev/null
source "$ROOT/.toolchain/wasm-env.sh"
echo "build-core-wasm: toolchain path: $SYNCOORD_WASM_PATH ($(rustc --version))" >&2
cargo build -p syncoord-core --target wasm32-unknown-unknown "$@"
