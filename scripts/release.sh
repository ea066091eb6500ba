#!/usr/bin/env bash
# Release artifacts from one script, into dist/:
#   - syncoord-<version>-py3-none-manylinux_2_17_x86_64.whl: the binary as a
#     maturin `bindings = "bin"` wheel (pip puts `syncoord` on PATH) with the
#     pure-Python helper module (`import syncoord`), packaging/python/;
#   - syncoord-<version>-x86_64-linux-gnu: the same binary, linked by zig
#     against glibc 2.17 (runs on any glibc >= 2.17), with its .sha256;
#   - aarch64: the same two, when this toolchain has rust-std for
#     aarch64-unknown-linux-gnu (otherwise said and skipped);
#   - syncoord-<version>-oci.tar: an OCI image (the binary and the few
#     libraries it links, non-root user, /etc/syncoord, a volume for the CA),
#     built with umoci, no Docker daemon.
# Every artifact is checked here: the wheel is installed into a fresh venv
# and runs `syncoord demo --duration 5` and the helpers; the binary's newest
# glibc symbol is <= 2.17; the image is unpacked and its binary run from the
# rootfs (chroot). It stops before publishing: see docs/releasing.md.
#
# Usage: scripts/release.sh [--check]
#   --check   (CI) x86_64 wheel and binary only, built and checked.
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
build() { # TRIPLE ARCH
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
    # The newest glibc symbol version the binary needs.
    local newest
    newest=$(objdump -T "$bin" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
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

if [ "$CHECK" = 1 ]; then
    echo "release: --check done in $((SECONDS - t0))s (x86_64 only)"
    exit 0
fi

# --- aarch64 -----------------------------------------------------------------
if rustc --print target-libdir --target aarch64-unknown-linux-gnu 2>/dev/null | xargs -r test -d \
    && ls "$(rustc --print target-libdir --target aarch64-unknown-linux-gnu)"/libstd-* >/dev/null 2>&1; then
    build aarch64-unknown-linux-gnu aarch64
    if command -v qemu-aarch64 >/dev/null 2>&1; then
        qemu-aarch64 -L /usr/aarch64-linux-gnu "$DIST/syncoord-$VERSION-aarch64-linux-gnu" --version
    fi
else
    # Tried on the build machine (no rustup downloads there): Debian
    # bookworm's libstd-rust-dev:arm64 is 1.63, below rust-version 1.85;
    # rust-src (for -Zbuild-std) is 1.63 too. A route left to try where
    # a multiarch apt is acceptable: rustc-web 1.85 with
    # libstd-rust-web-dev:arm64 (after `dpkg --add-architecture arm64`),
    # linked by cargo-zigbuild, checked under Debian's qemu-user-static.
    echo "release: aarch64 SKIPPED: this toolchain has no rust-std for aarch64-unknown-linux-gnu" \
        "(rustup target add aarch64-unknown-linux-gnu, then run again; Debian's arm64 std is 1.63," \
        "below the workspace's rust-version 1.85)"
fi

# --- OCI image ----------------------------------------------------------------
bash scripts/build-image.sh "$DIST/syncoord-$VERSION-x86_64-linux-gnu" "$VERSION" "$DIST"

echo "release: done in $((SECONDS - t0))s; artifacts in dist/:"
ls -l "$DIST"
echo "release: not published (no credentials here); see docs/releasing.md"
