#!/bin/sh
# ctest ui/dashboard: the dashboard in a real browser (tests/ui/dashboard.mjs).
# Skips (77) without node or chromium; installs its npm tools first
# (tests/ui/npm-install.sh). Usage: run.sh SOURCE_DIR BUILD_DIR
set -eu
SRC="$1"
BUILD="$2"
command -v node >/dev/null 2>&1 || { echo "ui: no node: skipped" >&2; exit 77; }
CHROMIUM="${CHROMIUM:-$(command -v chromium || true)}"
[ -n "$CHROMIUM" ] && [ -x "$CHROMIUM" ] || { echo "ui: no chromium: skipped" >&2; exit 77; }
"$SRC/tests/ui/npm-install.sh" || exit $?
export CHROMIUM RD_SOURCE_DIR="$SRC" RD_BINARY="$BUILD/bin/recoveryd" \
    RD_PLUGINS_DIR="$BUILD/plugins" RD_UI_OUT="$BUILD/ui-screenshots"
exec node "$SRC/tests/ui/dashboard.mjs"
