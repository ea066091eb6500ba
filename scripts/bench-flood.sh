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

[ -n "${SYNCOORD_BIN:-}" ] || cargo build --release -p syncoord-cli >/dev/null
cargo build --release -p syncoord-daemon --example flood >/dev/null
BIN=${SYNCOORD_BIN:-target/release/syncoord}
FLOOD=target/release/examples/flood
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
wait_port() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    exit 1
}
ulimit -n "$(ulimit -Hn)"

"$BIN" --log warn mock-upstream --listen "$MOCK" --unlimited >"$WORK/mock.log" 2>&1 &
PIDS+=($!)
wait_port "$MOCK"
sed "s#@MOCK@#http://$MOCK#; s#@LISTEN@#$PROXY#" scripts/bench-daemon.toml >"$WORK/syncoord.toml"
"$BIN" --log warn serve --config "$WORK/syncoord.toml" >"$WORK/syncoord.log" 2>&1 &
PIDS+=($!)
wait_port "$PROXY"

mkdir -p "$WORK/nginx-cache"
cat >"$WORK/nginx.conf" <<NGINX
user root;
worker_processes 2;
worker_rlimit_nofile 20000;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    proxy_cache_path $WORK/nginx-cache keys_zone=bench:10m;
    upstream mock { server $MOCK; keepalive 64; }
    server {
        listen $NGINX;
        client_header_timeout 10s;
        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
            proxy_cache_valid 200 90s;
            proxy_cache_lock on;
        }
    }
}
NGINX
nginx -c "$WORK/nginx.conf" -p "$WORK"
wait_port "$NGINX"

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
