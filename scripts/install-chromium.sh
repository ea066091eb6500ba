#!/usr/bin/env bash
# Installs Debian's chromium for the dashboard's browser test
# (daemon/tests/dashboard.rs), if /usr/bin/chromium is missing.
# Idempotent: does nothing when it is there. Runs apt-get update only when
# the package lists do not know the package. Needs root (CI runs as root).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    echo "chromium: present ($(/usr/bin/chromium --version 2>/dev/null || echo unknown version))"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if ! apt-cache show chromium >/dev/null 2>&1; then
    echo "chromium: apt-get update"
    $SUDO apt-get update -q
fi
echo "chromium: apt-get install chromium"
$SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
/usr/bin/chromium --version
