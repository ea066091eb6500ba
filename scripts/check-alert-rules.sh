#!/usr/bin/env bash
# `promtool check rules docs/alerts.yml` (promtool from Debian's
# prometheus package, installed if missing). The metric names the rules
# query are checked against /metrics by proxy/src/endpoints.rs's tests.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v promtool >/dev/null 2>&1; then
    echo "alert rules: apt-get install prometheus (for promtool)"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends prometheus
fi
promtool check rules docs/alerts.yml
