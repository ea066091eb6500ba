#!/usr/bin/env bash
# Load benchmark of the TLS cache-hit path (issue 10), beside plain HTTP and
# beside nginx terminating TLS (listen ssl + proxy_cache) on the same
# machine, at 1, 16 and 256 keep-alive connections; then TLS handshakes
# per new connection (wrk with Connection: close) for both. Prints
# Markdown tables (paste into BENCHMARKS.md) and the load average.
#
#   bash scripts/bench-tls.sh [SECONDS_PER_RUN]
#
# syncoord's TLS side is measured on `[server] tls_listen`: the same
# per-connection rustls transport (server/src/tls.rs) an intercepted
# CONNECT switches to, without the CONNECT round trip wrk cannot send.
# Both servers use one ECDSA P-256 certificate made here with openssl.
# Everything listens on 127.0.0.1 only:
#   mock :19110  syncoord plain :19111  syncoord TLS :19113  nginx TLS :19112
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DURATION=${1:-10}
CONNS=(1 16 256)
MOCK=127.0.0.1:19110
PROXY=127.0.0.1:19111
NGINX=127.0.0.1:19112
TLS=127.0.0.1:19113

. scripts/bench-lib.sh
need wrk wrk
need nginx nginx-light
need openssl openssl
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
start_mock_and_daemon --set "server.tls_listen=$TLS" \
    --set "server.tls_cert=$WORK/cert.pem" --set "server.tls_key=$WORK/key.pem"
wait_port "$TLS"
start_nginx 4096 "" "ssl_certificate $WORK/cert.pem; ssl_certificate_key $WORK/key.pem; ssl_session_cache off; ssl_session_tickets off;" ssl

HIT_PATH=/api/v3/brokerage/market/products/BTC-USD/ticker
curl -fsS "http://$PROXY$HIT_PATH" >/dev/null
curl -fsSk "https://$NGINX$HIT_PATH" >/dev/null

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| path (cache hit, keep-alive) | connections | requests/s | p50 | p99 | errors |"
echo "|---|---|---|---|---|---|"
for c in "${CONNS[@]}"; do run "syncoord plain HTTP" "http://$PROXY$HIT_PATH" "$c"; done
for c in "${CONNS[@]}"; do run "syncoord TLS (rustls)" "https://$TLS$HIT_PATH" "$c"; done
for c in "${CONNS[@]}"; do run "nginx TLS + proxy_cache" "https://$NGINX$HIT_PATH" "$c"; done
echo
echo "| new connection per request (Connection: close) | connections | requests/s | p50 | p99 | errors |"
echo "|---|---|---|---|---|---|"
for c in 1 16; do run "syncoord plain HTTP" "http://$PROXY$HIT_PATH" "$c" -H "Connection: close"; done
for c in 1 16; do run "syncoord TLS handshake" "https://$TLS$HIT_PATH" "$c" -H "Connection: close"; done
for c in 1 16; do run "nginx TLS handshake" "https://$NGINX$HIT_PATH" "$c" -H "Connection: close"; done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
