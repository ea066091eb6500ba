#!/usr/bin/env bash
# An OCI image of syncoord without a Docker daemon (umoci, from Debian):
# the binary, the few glibc libraries it links (nothing else: no shell, no
# package manager), a non-root user (65532), /etc/syncoord for the config
# and a volume at /var/lib/syncoord for the CA. Then checks it the way this
# machine can: unpacks the image and runs the binary from its rootfs
# (chroot): `--version` and a 2-second demo.
# Usage: scripts/build-image.sh BINARY VERSION OUTDIR  -> OUTDIR/syncoord-VERSION-oci.tar
set -euo pipefail
BIN=$(realpath "$1")
VERSION=$2
OUT=$(realpath "$3")
if ! command -v umoci >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends umoci
fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
LAYOUT=$WORK/oci
umoci init --layout "$LAYOUT"
umoci new --image "$LAYOUT:$VERSION"
umoci unpack --image "$LAYOUT:$VERSION" "$WORK/bundle"
ROOTFS=$WORK/bundle/rootfs
mkdir -p "$ROOTFS"/{usr/local/bin,etc/syncoord,var/lib/syncoord,tmp}
chmod 1777 "$ROOTFS/tmp"
install -m 0755 "$BIN" "$ROOTFS/usr/local/bin/syncoord"
# The libraries the binary links (libc, libm, libgcc_s, the loader), from
# this build machine, at the paths the binary looks for them.
ldd "$BIN" | grep -o '/[^ ]*' | while read -r lib; do
    mkdir -p "$ROOTFS$(dirname "$lib")"
    cp -L "$lib" "$ROOTFS$lib"
done
printf 'root:x:0:0:root:/:/sbin/nologin\nsyncoord:x:65532:65532:syncoord:/var/lib/syncoord:/sbin/nologin\n' >"$ROOTFS/etc/passwd"
printf 'root:x:0:\nsyncoord:x:65532:\n' >"$ROOTFS/etc/group"
# Listens on all of the container's addresses: reachable only where the
# operator publishes the port (`-p 127.0.0.1:8787:8787`).
printf '[server]\nlisten = "0.0.0.0:8787"\nca_dir = "/var/lib/syncoord/ca"\n' >"$ROOTFS/etc/syncoord/syncoord.toml"
chown -R 65532:65532 "$ROOTFS/var/lib/syncoord"
chmod 0700 "$ROOTFS/var/lib/syncoord"
umoci repack --image "$LAYOUT:$VERSION" "$WORK/bundle"
umoci config --image "$LAYOUT:$VERSION" \
    --author "syncoord" \
    --config.user 65532:65532 \
    --config.workingdir /var/lib/syncoord \
    --config.env SYNCOORD_CONFIG=/etc/syncoord/syncoord.toml \
    --config.env XDG_DATA_HOME=/var/lib \
    --config.entrypoint /usr/local/bin/syncoord \
    --config.cmd serve \
    --config.exposedports 8787/tcp \
    --config.volume /var/lib/syncoord \
    --config.label "org.opencontainers.image.title=syncoord" \
    --config.label "org.opencontainers.image.version=$VERSION"
umoci gc --layout "$LAYOUT"
tar -C "$LAYOUT" -cf "$OUT/syncoord-$VERSION-oci.tar" .
(cd "$OUT" && sha256sum "syncoord-$VERSION-oci.tar" >"syncoord-$VERSION-oci.tar.sha256")

# Check: a fresh unpack of what was built, the binary run from its rootfs.
umoci unpack --image "$LAYOUT:$VERSION" "$WORK/check"
chroot --userspec=65532:65532 "$WORK/check/rootfs" /usr/local/bin/syncoord --version
chroot --userspec=65532:65532 "$WORK/check/rootfs" /usr/local/bin/syncoord demo --duration 2 >/dev/null
echo "image: $OUT/syncoord-$VERSION-oci.tar (load with: skopeo copy oci-archive:$OUT/syncoord-$VERSION-oci.tar:$VERSION docker-daemon:syncoord:$VERSION); checked from its rootfs"
