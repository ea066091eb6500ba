#!/usr/bin/env bash
# What sharing through Redis costs (BENCHMARKS.md, "Cluster"): starts a
# redis-server of its own on a free loopback port (persistence off) and runs
# native/examples/cluster_bench.rs against it. Usage:
#   bash scripts/bench-cluster.sh [threads]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-redis.sh >/dev/null
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --maxmemory-policy noeviction --loglevel warning >/dev/null 2>&1 &
REDIS_PID=$!
trap 'kill $REDIS_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    if redis-cli -p "$PORT" ping >/dev/null 2>&1; then break; fi
    sleep 0.05
done
uptime
cargo run --release -q -p syncoord --example cluster_bench -- "redis://127.0.0.1:$PORT" "${1:-4}"
