# Sourced by the load benchmarks (bench-daemon.sh, bench-flood.sh): the
# same mock upstream, syncoord serve and nginx proxy_cache in front of it,
# started side by side on 127.0.0.1 and stopped on exit. The caller sets
# MOCK, PROXY and NGINX (host:port) before sourcing.

[ -n "${SYNCOORD_BIN:-}" ] || cargo build --release -p syncoord-cli >/dev/null
BIN=${SYNCOORD_BIN:-target/release/syncoord}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# Installs Debian package $2 when command $1 is missing (apt must be usable).
need() { command -v "$1" >/dev/null 2>&1 || { echo "installing $2"; apt-get install -y --no-install-recommends "$2" >/dev/null; }; }

# One wrk run as a Markdown row: run NAME URL CONNECTIONS [extra wrk args]
# (the caller sets DURATION, in seconds).
run() { # name url conns [extra wrk args]
    local out rps p50 p99 errors
    out=$(wrk -t"$(( $3 < 2 ? 1 : 2 ))" -c"$3" -d"${DURATION}s" --latency "${@:4}" "$2")
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
    printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$3" "$rps" "$p50" "$p99" "${errors:-none}"
}

wait_port() {
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    exit 1
}

# The mock (no rate limits) and syncoord serve (scripts/bench-daemon.toml);
# any arguments go to `syncoord serve` (e.g. `--set server.tls_listen=...`).
start_mock_and_daemon() {
    "$BIN" --log warn mock-upstream --listen "$MOCK" --unlimited >"$WORK/mock.log" 2>&1 &
    PIDS+=($!)
    wait_port "$MOCK"
    sed "s#@MOCK@#http://$MOCK#; s#@LISTEN@#$PROXY#" scripts/bench-daemon.toml >"$WORK/syncoord.toml"
    "$BIN" --log warn serve --config "$WORK/syncoord.toml" "$@" >"$WORK/syncoord.log" 2>&1 &
    PIDS+=($!)
    wait_port "$PROXY"
}

# nginx proxy_cache in front of the same mock: start_nginx CONNECTIONS
# [MAIN_LINES] [SERVER_LINES] [LISTEN_FLAGS] (extra nginx.conf lines for
# the main and the server context; `ssl` for a TLS listener).
start_nginx() {
    mkdir -p "$WORK/nginx-cache"
    cat >"$WORK/nginx.conf" <<NGINX
user root;
worker_processes 2;
${2:-}
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections $1; }
http {
    access_log off;
    proxy_cache_path $WORK/nginx-cache keys_zone=bench:10m;
    upstream mock { server $MOCK; keepalive 64; }
    server {
        listen $NGINX ${4:-};
        ${3:-}
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
}
