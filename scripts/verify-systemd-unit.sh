#!/usr/bin/env bash
# `systemd-analyze verify` on packaging/systemd/syncoord.service, with
# ExecStart pointed at a built binary (verify insists it exists).
# Usage: scripts/verify-systemd-unit.sh [BINARY] (default target/debug/syncoord).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BIN=$(realpath "${1:-target/debug/syncoord}")
if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "systemd unit: apt-get install systemd (for systemd-analyze)"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends systemd
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
sed "s#/usr/local/bin/syncoord#$BIN#" packaging/systemd/syncoord.service >"$dir/syncoord.service"
# verify prints problems on stderr and exits non-zero on errors; warnings
# (also on stderr) fail this check too.
out=$(systemd-analyze verify "$dir/syncoord.service" 2>&1) || { echo "$out"; exit 1; }
if [ -n "$out" ]; then echo "$out"; exit 1; fi
echo "systemd unit: systemd-analyze verify OK ($(systemd-analyze --version | head -1))"
