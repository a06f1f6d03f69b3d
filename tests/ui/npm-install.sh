#!/bin/sh
# Installs the browser test's npm tools into .deps/npm-ui (pinned; silent
# when present): playwright-core drives the system's chromium (Debian's
# package, no browser download), axe-core checks accessibility. Run by
# tests/ui/run.sh, or by hand. Exit 0 when installed, 77 when npm is missing.
set -eu
PLAYWRIGHT_VERSION=1.65.1
AXE_VERSION=4.14.1
PREFIX="$(cd "$(dirname "$0")/../.." && pwd)/.deps/npm-ui"

have() {
    [ -f "$PREFIX/node_modules/$1/package.json" ] &&
        grep -q "\"version\": \"$2\"" "$PREFIX/node_modules/$1/package.json"
}
have playwright-core "$PLAYWRIGHT_VERSION" && have axe-core "$AXE_VERSION" && exit 0
command -v npm >/dev/null 2>&1 || { echo "npm-install: no npm" >&2; exit 77; }
echo "npm-install: installing playwright-core@$PLAYWRIGHT_VERSION axe-core@$AXE_VERSION into .deps/npm-ui" >&2
mkdir -p "$PREFIX"
PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$PREFIX" --no-audit --no-fund \
    --loglevel=error "playwright-core@$PLAYWRIGHT_VERSION" "axe-core@$AXE_VERSION" >/dev/null
