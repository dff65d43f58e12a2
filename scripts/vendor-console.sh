#!/usr/bin/env bash
# Re-vendors the console's third-party browser assets (pinned versions) into
# console/assets/vendor/ with their licences, and writes MANIFEST (file, package, version,
# sha256). The console embeds these files in the binary; a test recomputes the hashes.
# Needs npm and network; the build never runs this.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/console/assets/vendor"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# package@version  file-in-package  vendored-name
assets=(
    "htmx.org@2.0.11 dist/htmx.min.js htmx.min.js"
    "htmx-ext-sse@2.2.4 dist/sse.min.js htmx-sse.min.js"
    "uplot@1.6.32 dist/uPlot.iife.min.js uPlot.iife.min.js"
    "uplot@1.6.32 dist/uPlot.min.css uPlot.min.css"
)

mkdir -p "$out"
rm -f "$out"/*
: >"$tmp/manifest"
for a in "${assets[@]}"; do
    read -r spec file name <<<"$a"
    pkg="${spec%@*}"
    version="${spec##*@}"
    dir="$tmp/$pkg"
    if [ ! -d "$dir" ]; then
        mkdir -p "$dir"
        (cd "$dir" && npm pack --silent "$spec" >/dev/null && tar xzf ./*.tgz)
        cp "$dir/package/LICENSE" "$out/$pkg.LICENSE"
    fi
    cp "$dir/package/$file" "$out/$name"
    echo "$name $pkg $version $(sha256sum "$out/$name" | cut -d' ' -f1)" >>"$tmp/manifest"
done
for l in "$out"/*.LICENSE; do
    echo "$(basename "$l") licence - $(sha256sum "$l" | cut -d' ' -f1)" >>"$tmp/manifest"
done
{
    echo "# file package version sha256 (written by scripts/vendor-console.sh)"
    cat "$tmp/manifest"
} >"$out/MANIFEST"
echo "vendored into $out:"
cat "$out/MANIFEST"
