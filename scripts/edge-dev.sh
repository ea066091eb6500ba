#!/usr/bin/env bash
# Runs the Worker locally under `wrangler dev` (workerd, no network needed),
# for tests and trying it out.
#
#   scripts/edge-dev.sh start [--port N] [--upstream URL | --config FILE] [--env-file FILE]
#       Builds if needed, starts wrangler dev on 127.0.0.1 in the background,
#       waits until it answers, prints its base URL (http://127.0.0.1:N) on
#       stdout and exits. Durable Object state goes to a fresh temporary
#       folder, so every start begins with empty cores.
#   scripts/edge-dev.sh stop
#       Stops the wrangler dev that `start` left running (and its workerd).
#   scripts/edge-dev.sh run [options as for start]
#       The same in the foreground; Ctrl-C stops it.
#
# --upstream URL sets SYNCOORD_UPSTREAM_URL (one upstream, e.g. a local mock);
# --config FILE sets SYNCOORD_CONFIG to the file's text (the ProxyConfig TOML).
# Neither: the vars in wrangler.toml (the built-in Coinbase defaults).
# --env-file FILE: Worker secrets (NAME="value" lines, as .dev.vars), e.g.
# the keys a signing-mode config names in its *_env fields.
# Port: --port, else $SYNCOORD_EDGE_PORT, else a free ephemeral port.
# Logs: .wrangler/edge-dev/wrangler.log. Ready timeout: $SYNCOORD_EDGE_READY_SECS (120).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR="$ROOT/.wrangler/edge-dev"
PID_FILE="$RUN_DIR/wrangler.pid"
URL_FILE="$RUN_DIR/url"
STATE_FILE="$RUN_DIR/state-dir"
LOG_FILE="$RUN_DIR/wrangler.log"
READY_SECS="${SYNCOORD_EDGE_READY_SECS:-120}"

log() { echo "edge-dev: $*" >&2; }
die() { log "$*"; exit 1; }

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# Stops the process group led by the wrangler we started (wrangler, its
# esbuild and workerd children), by its id.
stop_group() {
    local pid=$1 i
    kill -TERM -- "-$pid" 2>/dev/null || return 0
    for i in $(seq 1 50); do
        kill -0 -- "-$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    log "wrangler (pid $pid) ignored SIGTERM for 5 s; sending SIGKILL"
    kill -KILL -- "-$pid" 2>/dev/null || true
}

cmd_stop() {
    [ -f "$PID_FILE" ] || { log "not running (no $PID_FILE)"; return 0; }
    local pid
    pid=$(cat "$PID_FILE")
    stop_group "$pid"
    if [ -f "$STATE_FILE" ]; then rm -rf "$(cat "$STATE_FILE")"; fi
    rm -f "$PID_FILE" "$URL_FILE" "$STATE_FILE"
    log "stopped wrangler dev (pid $pid)"
}

start_wrangler() { # mode (start|run), remaining args
    local mode=$1 port="${SYNCOORD_EDGE_PORT:-}" upstream="" config="" env_file_arg=""
    shift
    while [ $# -gt 0 ]; do
        case "$1" in
        --port) port=${2:?--port needs a value}; shift 2 ;;
        --upstream) upstream=${2:?--upstream needs a URL}; shift 2 ;;
        --config) config=${2:?--config needs a file}; shift 2 ;;
        --env-file) env_file_arg=${2:?--env-file needs a file}; shift 2 ;;
        *) usage ;;
        esac
    done
    [ -z "$upstream" ] || [ -z "$config" ] || die "--upstream and --config exclude each other"
    [ -n "$port" ] || port=$(free_port)
    if [ -f "$PID_FILE" ] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; then
        die "already running (pid $(cat "$PID_FILE"), $(cat "$URL_FILE" 2>/dev/null)); run '$0 stop' first"
    fi

    local env_file="$ROOT/.toolchain/edge-env.sh"
    [ -f "$env_file" ] || die "$env_file missing; run scripts/install-edge-toolchain.sh first"
    # shellcheck source=/dev/null
    source "$env_file"
    # Build here rather than in wrangler, so that a build error is shown
    # plainly and the ready timeout covers only wrangler's own start.
    bash "$ROOT/scripts/build-edge.sh"

    local vars=()
    if [ -n "$upstream" ]; then
        vars+=(--var "SYNCOORD_UPSTREAM_URL:$upstream")
    elif [ -n "$config" ]; then
        [ -r "$config" ] || die "cannot read config file $config"
        vars+=(--var "SYNCOORD_CONFIG:$(cat "$config")")
    fi
    if [ -n "$env_file_arg" ]; then
        [ -r "$env_file_arg" ] || die "cannot read env file $env_file_arg"
        env_file_arg=$(cd "$(dirname "$env_file_arg")" && pwd)/$(basename "$env_file_arg")
        vars+=(--env-file "$env_file_arg")
    fi

    mkdir -p "$RUN_DIR"
    local state
    state=$(mktemp -d "$RUN_DIR/state.XXXXXX")
    echo "$state" >"$STATE_FILE"
    local url="http://127.0.0.1:$port"
    local args=(dev --ip 127.0.0.1 --port "$port" --persist-to "$state"
        --inspector-port "$(free_port)" --show-interactive-dev-session=false "${vars[@]}")
    export WRANGLER_SEND_METRICS=false CI=true CLOUDFLARE_CF_FETCH_ENABLED=false
    # wrangler's [build] step would run build-edge.sh again; it is up to date.
    log "starting wrangler ${args[*]:0:6} ... (log: ${LOG_FILE#"$ROOT"/})"
    local started
    started=$(date +%s.%N)
    cd "$ROOT"
    # Its own session, hence its own process group, so that stop ends
    # wrangler and the workerd it spawns, and nothing else.
    setsid wrangler "${args[@]}" </dev/null >"$LOG_FILE" 2>&1 &
    local pid=$!
    echo "$pid" >"$PID_FILE"
    echo "$url" >"$URL_FILE"
    if [ "$mode" = run ]; then
        trap 'cmd_stop; exit 0' INT TERM
    fi

    local deadline=$((SECONDS + READY_SECS))
    until curl -s -o /dev/null --max-time 2 "$url/api/v1/sync-coordination/health"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -rf "$PID_FILE" "$URL_FILE" "$STATE_FILE" "$state"
            tail -n 30 "$LOG_FILE" >&2
            die "wrangler exited before it was ready (log above)"
        fi
        if [ $SECONDS -ge $deadline ]; then
            tail -n 30 "$LOG_FILE" >&2
            cmd_stop
            die "wrangler not ready after $READY_SECS s"
        fi
        sleep 0.1
    done
    log "ready at $url after $(python3 -c "import time; print(f'{time.time() - $started:.1f}')") s (pid $pid)"
    echo "$url"
    if [ "$mode" = run ]; then
        tail -n +1 -f "$LOG_FILE" --pid "$pid" >&2 || true
        wait "$pid" || true
        rm -rf "$PID_FILE" "$URL_FILE" "$STATE_FILE" "$state"
    fi
}

case "${1:-}" in
start) shift; start_wrangler start "$@" ;;
run) shift; start_wrangler run "$@" ;;
stop) cmd_stop ;;
*) usage ;;
esac
