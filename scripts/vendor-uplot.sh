#!/usr/bin/env bash
# Re-vendors uPlot (the dashboard's charting library) from the npm registry
# at a pinned version into proxy/assets/vendor/uplot/: the minified IIFE
# build, its stylesheet and its license. The files are committed and
# embedded in the daemon and the Worker (include_str!), so neither users
# nor CI run this; run it to move to another version, then commit.
#   scripts/vendor-uplot.sh            # the pinned version
#   UPLOT_VERSION=1.6.33 scripts/vendor-uplot.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
VERSION="${UPLOT_VERSION:-1.6.32}"
DEST=proxy/assets/vendor/uplot
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "uplot@$VERSION" >/dev/null)
tar -xzf "$tmp/uplot-$VERSION.tgz" -C "$tmp"
mkdir -p "$DEST"
cp "$tmp/package/dist/uPlot.iife.min.js" "$DEST/uPlot.iife.min.js"
cp "$tmp/package/dist/uPlot.min.css" "$DEST/uPlot.min.css"
cp "$tmp/package/LICENSE" "$DEST/LICENSE"
echo "$VERSION" > "$DEST/VERSION"
echo "uPlot $VERSION vendored into $DEST:"
ls -l "$DEST"
