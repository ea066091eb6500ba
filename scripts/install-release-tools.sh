#!/usr/bin/env bash
# The release tools, from PyPI into a venv (no Rust cross toolchain or
# Docker needed): maturin (the wheel) and ziglang, its linker (a binary
# linked against glibc 2.17, so it runs on any Linux of the last decade).
# Idempotent. Where: $SYNCOORD_RELEASE_VENV, default .toolchain/release.
#
# With --aarch64 (the full release, not CI): the aarch64 toolchain from
# Debian bookworm instead: rustc-web (rustc >= 1.88, the workspace's
# rust-version) with libstd-rust-web-dev:arm64, the aarch64 std built for
# that exact compiler (rustup cannot download rust-std on the build
# machine; bookworm's plain libstd-rust-dev:arm64 is 1.63, too old), plus
# qemu-user-static and libc6:arm64 to run the result. This adds the arm64
# architecture to dpkg (`dpkg --add-architecture arm64`): a system change,
# made only here. Debian or a derivative with apt only.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
if [ "${1:-}" = "--aarch64" ]; then
    a64_pkgs="rustc-web libstd-rust-web-dev:arm64 qemu-user-static libc6:arm64 file"
    # Installed packages, by name: rustc-web itself, not Debian's plain
    # rustc (1.63 in bookworm), which also provides /usr/bin/rustc.
    present() {
        local p
        for p in $a64_pkgs; do
            dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || return 1
        done
    }
    if present; then
        echo "release tools: aarch64 present ($(/usr/bin/rustc --version), qemu-aarch64-static)"
        exit 0
    fi
    command -v apt-get >/dev/null 2>&1 || {
        echo "release tools: --aarch64 needs apt (Debian bookworm or newer): $a64_pkgs" >&2
        exit 1
    }
    export DEBIAN_FRONTEND=noninteractive
    dpkg --print-foreign-architectures | grep -qx arm64 || $SUDO dpkg --add-architecture arm64
    $SUDO apt-get update -q
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -q --no-install-recommends $a64_pkgs
    echo "release tools: aarch64 $(/usr/bin/rustc --version) with libstd-rust-web-dev:arm64, qemu-aarch64-static"
    exit 0
fi
VENV=${SYNCOORD_RELEASE_VENV:-.toolchain/release}
want="maturin==1.16.0 ziglang==0.14.1"
if [ -x "$VENV/bin/maturin" ] && [ "$(cat "$VENV/.syncoord-pins" 2>/dev/null)" = "$want" ]; then
    echo "release tools: present at $VENV ($want)"
    exit 0
fi
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends python3-venv
fi
mkdir -p "$(dirname "$VENV")"
python3 -m venv "$VENV"
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install -q --disable-pip-version-check $want
echo "$want" >"$VENV/.syncoord-pins"
echo "release tools: $VENV ($want)"
