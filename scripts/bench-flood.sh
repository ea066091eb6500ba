#!/usr/bin/env bash
# Connection flood beside a well-behaved bot: 2,000 idle (silent)
# connections and 1,000 slowloris ones (a header byte every 2 s) held open
# (reconnected whenever closed) while one keep-alive bot fetches a cached
# ticker back to back; the bot's latency is what counts. Run against
# syncoord serve and, as the yardstick, nginx's proxy_cache in front of the
# same mock upstream on the same machine. Prints what the load tool
# (daemon/examples/flood.rs) reports.
#
#   bash scripts/bench-flood.sh [SECONDS] [IDLE] [SLOWLORIS]
#
# Ports (127.0.0.1 only): mock 19110, syncoord 19111, nginx 19112.
# SYNCOORD_BIN overrides the daemon binary (default: a release build).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SECS=${1:-20}
IDLE=${2:-2000}
SLOW=${3:-1000}
MOCK=127.0.0.1:19110
PROXY=127.0.0.1:19111
NGINX=127.0.0.1:19112

cargo build --release -p syncoord-daemon --example flood >/dev/null
FLOOD=target/release/examples/flood
. scripts/bench-lib.sh
ulimit -n "$(ulimit -Hn)"
start_mock_and_daemon
start_nginx 8192 "worker_rlimit_nofile 20000;" "client_header_timeout 10s;"

HIT_PATH=/api/v3/brokerage/market/products/BTC-USD/ticker
curl -fsS "http://$PROXY$HIT_PATH" >/dev/null
curl -fsS "http://$NGINX$HIT_PATH" >/dev/null

echo "## syncoord serve ($PROXY), $IDLE idle + $SLOW slowloris, ${SECS}s"
"$FLOOD" "$PROXY" "$HIT_PATH" --idle "$IDLE" --slowloris "$SLOW" --secs "$SECS"
echo "## nginx proxy_cache ($NGINX), $IDLE idle + $SLOW slowloris, ${SECS}s"
"$FLOOD" "$NGINX" "$HIT_PATH" --idle "$IDLE" --slowloris "$SLOW" --secs "$SECS"
echo "## no flood, for scale (syncoord, then nginx)"
"$FLOOD" "$PROXY" "$HIT_PATH" --idle 0 --slowloris 0 --secs 5
"$FLOOD" "$NGINX" "$HIT_PATH" --idle 0 --slowloris 0 --secs 5
