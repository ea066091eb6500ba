#!/usr/bin/env bash
# Installs Debian's curl for the CONNECT test (daemon/tests/tls.rs), if
# it is missing. Idempotent. Needs root (CI runs as root).
set -euo pipefail
if command -v curl >/dev/null 2>&1; then
    echo "curl: present ($(curl --version | head -1))"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if ! apt-cache show curl >/dev/null 2>&1; then
    $SUDO apt-get update -q
fi
$SUDO apt-get install -y -q --no-install-recommends curl ca-certificates
curl --version | head -1
