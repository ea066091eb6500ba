#!/usr/bin/env bash
# Load benchmark of the native daemon, with nginx's proxy_cache on the same
# machine as the yardstick. Prints a Markdown table (paste into
# BENCHMARKS.md).
#
#   bash scripts/bench-daemon.sh [SECONDS_PER_RUN]
#
# Needs wrk and nginx (Debian packages `wrk`, `nginx-light`; installed if
# missing and apt is usable). Everything listens on 127.0.0.1 only:
#   mock upstream  :19100   (syncoord mock-upstream)
#   syncoord serve :19101   (scripts/bench-daemon.toml)
#   nginx          :19102   (proxy_cache in front of the same mock)
# Hit path:  GET of one ticker, answered from cache.
# Miss path: GET of an uncached, unpaced echo route: every request is an
#            upstream round trip through the coordinator.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DURATION=${1:-10}
CONNS=(1 16 256)
MOCK=127.0.0.1:19100
PROXY=127.0.0.1:19101
NGINX=127.0.0.1:19102

. scripts/bench-lib.sh
need wrk wrk
need nginx nginx-light
start_mock_and_daemon
start_nginx 4096

HIT_PATH=/api/v3/brokerage/market/products/BTC-USD/ticker
MISS_PATH=/__echo/bench-miss
# Warm both caches.
curl -fsS "http://$PROXY$HIT_PATH" >/dev/null
curl -fsS "http://$NGINX$HIT_PATH" >/dev/null

echo "| path | connections | requests/s | p50 | p99 | errors |"
echo "|---|---|---|---|---|---|"
# The hit runs alternate (syncoord, nginx) per connection count, so a
# shift in the machine's load falls on both sides alike; printed grouped.
HITS=()
for c in "${CONNS[@]}"; do
    HITS+=("$(run "syncoord cache hit" "http://$PROXY$HIT_PATH" "$c")")
    HITS+=("$(run "nginx proxy_cache hit" "http://$NGINX$HIT_PATH" "$c")")
done
for i in "${!HITS[@]}"; do (( i % 2 == 0 )) && echo "${HITS[$i]}"; done
for i in "${!HITS[@]}"; do (( i % 2 == 1 )) && echo "${HITS[$i]}"; done
for c in "${CONNS[@]}"; do run "syncoord miss (upstream round trip)" "http://$PROXY$MISS_PATH" "$c"; done
for c in "${CONNS[@]}"; do run "mock upstream direct" "http://$MOCK$MISS_PATH" "$c"; done
