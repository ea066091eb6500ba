#!/usr/bin/env bash
# A Python venv with the client libraries the zero-code integration test
# (daemon/tests/python_clients.rs, scripts/python/clients_through_proxy.py)
# runs unmodified: ccxt and coinbase-advanced-py from PyPI, pinned.
# Idempotent: does nothing when the venv already has both at these versions.
# Where: $SYNCOORD_PYTHON_VENV, default .toolchain/python.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=${SYNCOORD_PYTHON_VENV:-.toolchain/python}
CCXT=4.5.90
CBADV=1.8.4
want="ccxt==$CCXT coinbase-advanced-py==$CBADV"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.syncoord-pins" 2>/dev/null)" = "$want" ]; then
    echo "python venv: present at $VENV ($want)"
    exit 0
fi
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    echo "python venv: apt-get install python3-venv"
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends python3-venv
fi
mkdir -p "$(dirname "$VENV")"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "ccxt==$CCXT" "coinbase-advanced-py==$CBADV"
echo "$want" >"$VENV/.syncoord-pins"
echo "python venv: $VENV ($want)"
