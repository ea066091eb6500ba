#!/usr/bin/env bash
# Builds the Worker (edge-worker/) with worker-build into edge-worker/build/
# (worker/shim.mjs + index.wasm, what wrangler.toml's `main` points at).
# Uses only local tools: scripts/install-edge-toolchain.sh must have run
# (it writes .toolchain/edge-env.sh); worker-build would otherwise try to
# download wasm-bindgen and wasm-opt from a code host.
# Extra arguments go to worker-build (default: --release).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ENV_FILE="$ROOT/.toolchain/edge-env.sh"
if [ ! -f "$ENV_FILE" ]; then
    echo "build-edge: $ENV_FILE missing; run scripts/install-edge-toolchain.sh first" >&2
    exit 1
fi
# shellcheck source=/dev/null
source "$ENV_FILE"
cd "$ROOT/edge-worker"
[ $# -gt 0 ] || set -- --release
started=$(date +%s)
echo "build-edge: worker-build $* ($(rustc --version), toolchain path: $SYNCOORD_WASM_PATH)" >&2
worker-build "$@" >&2
echo "build-edge: built edge-worker/build in $(($(date +%s) - started)) s" >&2
