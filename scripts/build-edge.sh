#!/usr/bin/env bash
# Builds the Worker (edge-worker/) with worker-build into edge-worker/build/
# (worker/shim.mjs + index.wasm, what wrangler.toml's `main` points at).
# Uses only local tools: scripts/install-edge-toolchain.sh must have run
# (it writes .toolchain/edge-env.sh); worker-build would otherwise try to
# download wasm-bindgen and wasm-opt from a code host.
# Extra arguments go to worker-build (default: --release).
#
# Skips the build when edge-worker/build is newer than every input (the
# sources of edge-worker and of the crates it builds on, core, wire and proxy,
# their manifests, Cargo.lock), because
# `wrangler dev` runs this on every start (wrangler.toml [build]) and
# worker-build always reruns wasm-bindgen and wasm-opt (~40 s) even when
# cargo has nothing to do. SYNCOORD_EDGE_FORCE_BUILD=1 builds anyway.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ENV_FILE="$ROOT/.toolchain/edge-env.sh"
if [ ! -f "$ENV_FILE" ]; then
    echo "build-edge: $ENV_FILE missing; run scripts/install-edge-toolchain.sh first" >&2
    exit 1
fi
# shellcheck source=/dev/null
source "$ENV_FILE"
OUT="$ROOT/edge-worker/build/worker/shim.mjs"
if [ -z "${SYNCOORD_EDGE_FORCE_BUILD:-}" ] && [ $# -eq 0 ] && [ -f "$OUT" ] &&
    [ -z "$(find "$ROOT/edge-worker/src" "$ROOT/core/src" "$ROOT/wire/src" "$ROOT/proxy/src" "$ROOT/proxy/assets" \
        "$ROOT/edge-worker/Cargo.toml" "$ROOT/core/Cargo.toml" "$ROOT/wire/Cargo.toml" "$ROOT/proxy/Cargo.toml" \
        "$ROOT/Cargo.toml" "$ROOT/Cargo.lock" -newer "$OUT" -print -quit)" ]; then
    echo "build-edge: edge-worker/build is up to date" >&2
    exit 0
fi
cd "$ROOT/edge-worker"
[ $# -gt 0 ] || set -- --release
started=$(date +%s)
echo "build-edge: worker-build $* ($(rustc --version), toolchain path: $SYNCOORD_WASM_PATH)" >&2
worker-build "$@" >&2
echo "build-edge: built edge-worker/build in $(($(date +%s) - started)) s" >&2
