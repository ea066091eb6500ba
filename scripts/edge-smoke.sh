#!/usr/bin/env bash
# End-to-end smoke test of the Worker under `wrangler dev`, against a local
# stand-in upstream (scripts/edge-stub-upstream.py) on 127.0.0.1:
#   1. a GET goes through (X-Syncoord-Cache: miss) and reaches upstream once;
#   2. the same GET again is a cache hit (X-Syncoord-Cache: hit), upstream
#      still saw one call;
#   3. identical GETs sent at once share one upstream call (coalesced);
#   4. the stats, health and metrics endpoints answer and name the shard.
# Needs scripts/install-edge-toolchain.sh to have run. Exits non-zero on the
# first failed check; always stops what it started.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
WORK=$(mktemp -d)
STUB_PID=""

log() { echo "edge-smoke: $*" >&2; }
fail() { log "FAIL: $*"; exit 1; }
cleanup() {
    bash scripts/edge-dev.sh stop >/dev/null 2>&1 || true
    if [ -n "$STUB_PID" ]; then kill "$STUB_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

python3 scripts/edge-stub-upstream.py >"$WORK/stub.url" 2>"$WORK/stub.log" &
STUB_PID=$!
for _ in $(seq 1 50); do [ -s "$WORK/stub.url" ] && break; sleep 0.1; done
UPSTREAM=$(head -n 1 "$WORK/stub.url")
[ -n "$UPSTREAM" ] || fail "stub upstream did not start"
upstream_calls() { curl -sf "$UPSTREAM/__stub/calls" | python3 -c 'import json,sys; print(json.load(sys.stdin)["calls"])'; }

EDGE=$(bash scripts/edge-dev.sh start --upstream "$UPSTREAM")
log "edge at $EDGE, upstream at $UPSTREAM"

cache_of() { # url -> value of X-Syncoord-Cache
    curl -sf -o /dev/null -D - "$1" -H 'X-Syncoord-Client: smoke' |
        tr -d '\r' | awk -F': ' 'tolower($1) == "x-syncoord-cache" { print $2 }'
}

TICKER="$EDGE/api/v3/brokerage/market/products/BTC-USD/ticker?limit=1"
[ "$(cache_of "$TICKER")" = miss ] || fail "first GET was not a miss"
[ "$(upstream_calls)" = 1 ] || fail "upstream saw $(upstream_calls) calls, expected 1"
[ "$(cache_of "$TICKER")" = hit ] || fail "repeat GET was not a cache hit"
[ "$(upstream_calls)" = 1 ] || fail "the hit reached upstream"
log "ok: GET goes through (miss), repeat is a hit, upstream saw 1 call"

CANDLES="$EDGE/api/v3/brokerage/market/products/ETH-USD/candles"
pids=()
for i in $(seq 1 8); do
    cache_of "$CANDLES" >"$WORK/c$i" &
    pids+=($!)
done
wait "${pids[@]}" # not a bare `wait`: the stub upstream runs in the background too
sources=$(sort "$WORK"/c* | uniq -c | tr -s ' ' | paste -sd, -)
[ "$(upstream_calls)" = 2 ] || fail "8 identical GETs made $(($(upstream_calls) - 1)) upstream calls ($sources)"
log "ok: 8 identical GETs at once, 1 upstream call ($sources)"

curl -sf "$EDGE/api/v1/sync-coordination/stats" >"$WORK/stats.json" || fail "stats endpoint"
python3 - "$WORK/stats.json" <<'EOF' || fail "stats content"
import json, sys
s = json.load(open(sys.argv[1]))
text = json.dumps(s)
assert "advanced/global" in text, "shard advanced/global missing"
EOF
curl -sf "$EDGE/api/v1/sync-coordination/health" >/dev/null || fail "health endpoint"
curl -sf "$EDGE/metrics" | grep -q 'advanced/global' || fail "metrics do not name the shard"
log "ok: stats, health and metrics answer and name shard advanced/global"
log "PASS"
