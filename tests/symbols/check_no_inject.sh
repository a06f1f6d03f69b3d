#!/bin/sh
# The default recoveryd holds no fault injection (issue 11): the hooks of
# engine/*/inject*.c live in the rdinject library that only tests link
# (engine/CMakeLists.txt), never in rdcore.
#
#   check_no_inject.sh NM RECOVERYD
#
# Reads the whole symbol table (local symbols included: the engine's are
# hidden, not absent). Exits 77 (skipped) when the binary is stripped: then
# nothing can be told from its symbols.
set -eu

if [ "$#" -ne 2 ]; then
    echo "usage: $0 NM RECOVERYD" >&2
    exit 2
fi
nm=$1
bin=$2
syms=$("$nm" "$bin" 2>/dev/null || true)
# The control: an engine function every build has must be visible.
if ! printf '%s\n' "$syms" | grep -q -w rd_fsm_apply; then
    echo "SKIP: $bin shows no engine symbols (stripped?): cannot check" >&2
    exit 77
fi
found=$(printf '%s\n' "$syms" | awk '{ print $NF }' | grep -E '^rd_[a-z_]*inject' || true)
if [ -n "$found" ]; then
    echo "FAIL: $bin contains fault-injection symbols (only rdinject may):" >&2
    printf '    %s\n' $found >&2
    exit 1
fi
echo "ok: $bin contains no fault-injection symbol"
