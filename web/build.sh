#!/usr/bin/env bash
# Assembles the web root usherd serves (usherd --web-root OUT): the pages from web/src as they
# are (plain ES modules, no bundler, no transpiler) and the two vendored charting files copied
# out of web/node_modules, which `npm ci` fills from web/package-lock.json (docs/web.md).
#
#   web/build.sh OUT      OUT is replaced; usually build-web/ (make web)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: web/build.sh OUT}
mods=$here/node_modules

need=(
    "$mods/chart.js/dist/chart.umd.min.js"
    "$mods/chart.js/LICENSE.md"
    "$mods/chartjs-chart-matrix/dist/chartjs-chart-matrix.min.js"
    "$mods/chartjs-chart-matrix/LICENSE"
)
for f in "${need[@]}"; do
    if [ ! -f "$f" ]; then
        echo "web/build.sh: $f is missing; run 'npm ci' in web/ (make web does)" >&2
        exit 1
    fi
done

case "$out" in
    "" | / | "$here" | "$here/src") echo "web/build.sh: refusing to replace '$out'" >&2; exit 2 ;;
esac
tmp=$(mktemp -d "${out%/}.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cp -R "$here/src/." "$tmp/"
mkdir -p "$tmp/vendor"
cp "$mods/chart.js/dist/chart.umd.min.js" "$tmp/vendor/chart.umd.min.js"
cp "$mods/chart.js/LICENSE.md" "$tmp/vendor/chart.js.LICENSE.txt"
cp "$mods/chartjs-chart-matrix/dist/chartjs-chart-matrix.min.js" "$tmp/vendor/chartjs-chart-matrix.min.js"
cp "$mods/chartjs-chart-matrix/LICENSE" "$tmp/vendor/chartjs-chart-matrix.LICENSE.txt"
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
