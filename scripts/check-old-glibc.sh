#!/usr/bin/env bash
# Runs the x86_64 release binary on a glibc older than the build machine's,
# for real: Debian bullseye's glibc 2.31 (the binary is linked against 2.17;
# the daemon built the ordinary way needs 2.35). Bullseye's libc6 and
# libgcc-s1 packages (pinned by SHA-256 below, cached under
# $SYNCOORD_OLD_GLIBC_CACHE, default .toolchain/old-glibc) are unpacked into
# a temporary root, and the binary is started by that root's loader with
# only that root's libraries: `--version` and `demo --duration 3`. Before
# the run, `ld.so --list` must resolve every library inside the old root
# (else the check would prove nothing), and the old libc states its version.
# No root, chroot or container needed.
#
# Usage: scripts/check-old-glibc.sh BINARY
# Exits non-zero when the binary does not run there, e.g. with
# "version `GLIBC_2.34' not found" for a binary built against a newer glibc.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ $# -eq 1 ] || { echo "usage: $0 BINARY" >&2; exit 2; }
BIN=$(realpath "$1")
[ -x "$BIN" ] || { echo "old-glibc: $BIN is not an executable file" >&2; exit 2; }
CACHE=${SYNCOORD_OLD_GLIBC_CACHE:-.toolchain/old-glibc}
MIRROR=${SYNCOORD_DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Bullseye (Debian 11) packages: path in the pool and SHA-256, as listed in
# bullseye/main/binary-amd64/Packages (read with apt-cache show). When the
# mirror drops a version (bullseye moving to archive.debian.org), update the
# pair from the archive's Packages index.
DEBS=(
    "pool/main/g/glibc/libc6_2.31-13+deb11u11_amd64.deb 05f7264da867b37f4c5ce49266b558ea1e81e05a9464f623152fca70f3550282"
    "pool/main/g/gcc-10/libgcc-s1_10.2.1-6_amd64.deb e478f2709d8474165bb664de42e16950c391f30eaa55bc9b3573281d83a29daf"
)
t0=$SECONDS
mkdir -p "$CACHE"
ROOT=$(mktemp -d)
trap 'rm -rf "$ROOT"' EXIT
for entry in "${DEBS[@]}"; do
    read -r path sum <<<"$entry"
    deb=$CACHE/$(basename "$path")
    if ! echo "$sum  $deb" | sha256sum -c --status 2>/dev/null; then
        curl -fsS --retry 2 -m 120 -o "$deb.part" "$MIRROR/$path" || {
            echo "old-glibc: could not fetch $MIRROR/$path (has the mirror dropped it? see the pins in $0)" >&2
            exit 1
        }
        echo "$sum  $deb.part" | sha256sum -c --status || {
            echo "old-glibc: $MIRROR/$path does not match its pinned SHA-256 $sum" >&2
            rm -f "$deb.part"
            exit 1
        }
        mv "$deb.part" "$deb"
    fi
    dpkg-deb -x "$deb" "$ROOT"
done
LIBS=$ROOT/lib/x86_64-linux-gnu:$ROOT/usr/lib/x86_64-linux-gnu
LDSO=$ROOT/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
run() { "$LDSO" --inhibit-cache --library-path "$LIBS" "$@"; }
# Which glibc this is, from the library itself.
run "$ROOT/lib/x86_64-linux-gnu/libc.so.6" | head -1
# Every library the binary needs must come from the old root.
list=$(run --list "$BIN")
echo "$list"
if echo "$list" | grep '=>' | grep -v "=> $ROOT/" | grep -q .; then
    echo "old-glibc: a library resolved outside the bullseye root; the check would prove nothing" >&2
    exit 1
fi
run "$BIN" --version
run "$BIN" demo --duration 3 >/dev/null
echo "old-glibc: $(basename "$BIN") runs on Debian bullseye's glibc 2.31 (--version, demo --duration 3) in $((SECONDS - t0))s"
