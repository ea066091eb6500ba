#!/usr/bin/env bash
# Installs Debian's redis-server for the cluster tests (daemon/tests/cluster.rs
# start their own redis-server on an ephemeral loopback port, persistence off),
# if /usr/bin/redis-server is missing. Idempotent. The packaged service is not
# needed: the tests start their own instance. Needs root (CI runs as root).
set -euo pipefail
if [ -x /usr/bin/redis-server ]; then
    echo "redis-server: present ($(/usr/bin/redis-server --version))"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if ! apt-cache show redis-server >/dev/null 2>&1; then
    echo "redis-server: apt-get update"
    $SUDO apt-get update -q
fi
echo "redis-server: apt-get install redis-server"
# policy-rc.d keeps the package from starting its own service where it can.
$SUDO apt-get install -y -q --no-install-recommends redis-server
/usr/bin/redis-server --version
