#!/usr/bin/env bash
# Installs the console browser suite's npm packages (playwright-core, exactly the version
# and hash console/browser/package-lock.json pins; it downloads no browser: the suite drives
# Debian's chromium). Quiet and quick when they are already there.
set -euo pipefail
dir="$(cd "$(dirname "$0")/../console/browser" && pwd)"
stamp="$dir/node_modules/.lock-installed"
if [ -f "$stamp" ] && cmp -s "$stamp" "$dir/package-lock.json"; then
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    echo "error: npm is missing; run scripts/prereqs.sh as root (it installs nodejs and npm)" >&2
    exit 1
fi
echo "installing the browser tests' npm packages (console/browser/package-lock.json)"
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
cp "$dir/package-lock.json" "$stamp"
