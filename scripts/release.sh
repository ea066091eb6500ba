#!/usr/bin/env bash
# Release artifacts from one script, into dist/:
#   - syncoord-<version>-py3-none-manylinux_2_17_x86_64.whl: the binary as a
#     maturin `bindings = "bin"` wheel (pip puts `syncoord` on PATH) with the
#     pure-Python helper module (`import syncoord`), packaging/python/;
#   - syncoord-<version>-x86_64-linux-gnu: the same binary, linked by zig
#     against glibc 2.17 (runs on any glibc >= 2.17), with its .sha256;
#   - aarch64: the same two, compiled by Debian's rustc-web with its
#     aarch64 std (libstd-rust-web-dev:arm64; rustup cannot download
#     rust-std on the build machine), linked by zig against glibc 2.17,
#     in their own target dir (target/aarch64-debian-rustc);
#   - syncoord-<version>-oci.tar: an OCI image (the binary and the few
#     libraries it links, non-root user, /etc/syncoord, a volume for the CA),
#     built with umoci, no Docker daemon.
# Every artifact is checked here: the wheel is installed into a fresh venv
# and runs `syncoord demo --duration 5` and the helpers; each binary's
# newest glibc symbol is <= 2.17; the x86_64 binary runs on Debian
# bullseye's glibc 2.31 (scripts/check-old-glibc.sh); the aarch64 binary
# runs under qemu-user (`--version`, a 3-second demo); the image is
# unpacked and its binary run from the rootfs (chroot). It stops before
# publishing: see docs/releasing.md.
#
# Usage: scripts/release.sh [--check]
#   --check   (CI) x86_64 wheel and binary only, built and checked (the old
#             glibc run included).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CHECK=0
[ "${1:-}" = "--check" ] && CHECK=1
ROOT=$PWD
DIST=$ROOT/dist
mkdir -p "$DIST"
bash scripts/install-release-tools.sh
TOOLS=$ROOT/${SYNCOORD_RELEASE_VENV:-.toolchain/release}
export PATH="$TOOLS/bin:$PATH"
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' cli/Cargo.toml | head -1)
t0=$SECONDS

# --- wheel and binary --------------------------------------------------------
# build TRIPLE ARCH: the wheel and the binary for one target, with whatever
# RUSTC and CARGO_TARGET_DIR the caller set.
build() {
    local triple=$1 arch=$2 wheel bin
    (cd packaging/python && maturin build --release --zig --compatibility manylinux2014 \
        --target "$triple" -o "$DIST")
    wheel=$(ls "$DIST"/syncoord-"$VERSION"-*manylinux*"$arch".whl | head -1)
    bin=$DIST/syncoord-$VERSION-$arch-linux-gnu
    python3 - "$wheel" "$bin" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".data/scripts/syncoord"))
    open(out, "wb").write(z.read(name))
PY
    chmod 0755 "$bin"
    (cd "$DIST" && sha256sum "$(basename "$bin")" >"$(basename "$bin").sha256" \
        && sha256sum "$(basename "$wheel")" >"$(basename "$wheel").sha256")
    # The newest glibc symbol version the binary needs (readelf reads any
    # architecture's ELF; the host's objdump may not).
    local newest
    newest=$(readelf -V --wide "$bin" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
    echo "release: $bin needs $newest at most"
    case $newest in
        GLIBC_2.1[0-7] | GLIBC_2.[0-9] | GLIBC_2.[0-9].*) ;;
        *) echo "release: $bin needs $newest, past glibc 2.17" >&2; exit 1 ;;
    esac
    file "$bin"
}
build x86_64-unknown-linux-gnu x86_64
echo "release: x86_64 wheel and binary built in $((SECONDS - t0))s"

# --- the wheel in a fresh venv, no Rust on PATH ------------------------------
t1=$SECONDS
VENV=$(mktemp -d)
trap 'rm -rf "$VENV"' EXIT
python3 -m venv "$VENV/venv"
"$VENV/venv/bin/pip" install -q --disable-pip-version-check --no-index \
    "$(ls "$DIST"/syncoord-"$VERSION"-*manylinux*x86_64.whl | head -1)"
env -i HOME="$VENV" PATH="$VENV/venv/bin:/usr/bin:/bin" syncoord demo --duration 5
env -i HOME="$VENV" PATH="$VENV/venv/bin:/usr/bin:/bin" SYNCOORD_PROXY=127.0.0.1:9999 \
    SYNCOORD_CA_DIR=/tmp/ca python -c '
import syncoord
assert syncoord.proxy_url() == "http://127.0.0.1:9999", syncoord.proxy_url()
assert syncoord.ca_file() == "/tmp/ca/ca.pem", syncoord.ca_file()
print("release: import syncoord OK")'
echo "release: wheel checked in a fresh venv in $((SECONDS - t1))s"

# --- the binary on an older glibc (Debian bullseye's 2.31) -------------------
bash scripts/check-old-glibc.sh "$DIST/syncoord-$VERSION-x86_64-linux-gnu"

if [ "$CHECK" = 1 ]; then
    echo "release: --check done in $((SECONDS - t0))s (x86_64 only)"
    exit 0
fi

# --- aarch64 -----------------------------------------------------------------
# Debian's rustc-web and its arm64 std, qemu-user-static and libc6:arm64
# (multiarch) to run the result; installed by the tools script.
t2=$SECONDS
bash scripts/install-release-tools.sh --aarch64
A64_BIN=$DIST/syncoord-$VERSION-aarch64-linux-gnu
RUSTC=/usr/bin/rustc CARGO_TARGET_DIR=$ROOT/target/aarch64-debian-rustc \
    build aarch64-unknown-linux-gnu aarch64
file "$A64_BIN" | grep -q 'ARM aarch64' || {
    echo "release: $A64_BIN is not an aarch64 executable" >&2
    exit 1
}
# The loader and libraries come from libc6:arm64 (/lib/ld-linux-aarch64.so.1).
qemu-aarch64-static -L / "$A64_BIN" --version
qemu-aarch64-static -L / "$A64_BIN" demo --duration 3 >/dev/null
echo "release: aarch64 wheel and binary built and run under qemu-user in $((SECONDS - t2))s"

# --- OCI image ----------------------------------------------------------------
bash scripts/build-image.sh "$DIST/syncoord-$VERSION-x86_64-linux-gnu" "$VERSION" "$DIST"

echo "release: done in $((SECONDS - t0))s; artifacts in dist/:"
ls -l "$DIST"
echo "release: not published (no credentials here); see docs/releasing.md"
