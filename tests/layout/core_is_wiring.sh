#!/bin/sh
# core/ is wiring and lifecycle only: main.c and core/ itself may include
# core/engine.h, no module below them (issue 10). Every module's init takes
# what it uses; a module that reaches for the engine fails this test.
set -eu
root=${1:?usage: core_is_wiring.sh REPO_ROOT}
bad=$(grep -rlE '^[[:space:]]*#[[:space:]]*include[[:space:]]+"(core/)?engine\.h"' "$root/engine" \
    | grep -v -e "^$root/engine/core/" -e "^$root/engine/main.c$" || true)
if [ -n "$bad" ]; then
    echo "these files include core/engine.h; pass what they use at init instead:" >&2
    echo "$bad" >&2
    exit 1
fi
n=$(grep -rlE '#[[:space:]]*include[[:space:]]+"core/engine\.h"' "$root/engine" | wc -l)
echo "core/engine.h is included by $n file(s), all in core/ or main.c"
