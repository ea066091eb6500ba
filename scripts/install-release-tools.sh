#!/usr/bin/env bash
# The release tools, from PyPI into a venv (no Rust cross toolchain or
# Docker needed): maturin (the wheel) and ziglang, its linker (a binary
# linked against glibc 2.17, so it runs on any Linux of the last decade).
# Idempotent. Where: $SYNCOORD_RELEASE_VENV, default .toolchain/release.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=${SYNCOORD_RELEASE_VENV:-.toolchain/release}
want="maturin==1.16.0 ziglang==0.14.1"
if [ -x "$VENV/bin/maturin" ] && [ "$(cat "$VENV/.syncoord-pins" 2>/dev/null)" = "$want" ]; then
    echo "release tools: present at $VENV ($want)"
    exit 0
fi
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends python3-venv
fi
mkdir -p "$(dirname "$VENV")"
python3 -m venv "$VENV"
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install -q --disable-pip-version-check $want
echo "$want" >"$VENV/.syncoord-pins"
echo "release tools: $VENV ($want)"
