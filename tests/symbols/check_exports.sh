#!/bin/sh
# The engine's export surface (ctest symbols/exports).
#
#   check_exports.sh NM RECOVERYD PLUGIN.so...
#
# - recoveryd exports no symbol of the engine (rd_*) nor of the libraft it
#   links statically (raft_*): rdcore is built with hidden visibility, so
#   this holds whatever the link (-rdynamic, ENABLE_EXPORTS) and no plugin or
#   shared library can bind to the engine's internals or interpose on them.
# - Each plugin exports its entry point, rd_plugin_entry
#   (engine/include/recoveryd/plugin.h), and nothing else, and needs no rd_*
#   symbol from outside: plugins reach the engine only through the host
#   table handed to init(), which is why the binary exports nothing for them.
#
# Prints every offending symbol and exits 1 when there is one.
set -eu

if [ "$#" -lt 3 ]; then
    echo "usage: $0 NM RECOVERYD PLUGIN.so..." >&2
    exit 2
fi
nm=$1
bin=$2
shift 2
entry=rd_plugin_entry
fail=0

# The names in FILE's dynamic symbol table (nm -D OPTIONS), one a line,
# without a version suffix (stderr@GLIBC_2.2.5). nm failing fails the test.
dynsyms() {
    out=$("$nm" -D "$2" "$1") || {
        echo "FAIL: $nm -D $2 $1 failed" >&2
        exit 1
    }
    printf '%s\n' "$out" | awk 'NF { sub(/@.*/, "", $NF); print $NF }'
}

# The binary must be one nm can read: a dynamically linked executable has
# undefined dynamic symbols (libuv's, libc's) at the least.
if [ -z "$(dynsyms "$bin" --undefined-only)" ]; then
    echo "FAIL: $bin has no dynamic symbols: not the dynamically linked recoveryd" >&2
    exit 1
fi
leaked=$(dynsyms "$bin" --defined-only | grep -E '^(rd_|raft_)' || true)
if [ -n "$leaked" ]; then
    echo "FAIL: $bin exports engine symbols (rdcore must be built with hidden visibility):" >&2
    printf '    %s\n' $leaked >&2
    fail=1
else
    echo "ok: $bin exports no rd_* or raft_* symbol"
fi

for so in "$@"; do
    # Older linkers also list their own _init, _fini, _edata, _end and
    # __bss_start: not the plugin's doing.
    extra=$(dynsyms "$so" --defined-only |
        grep -v -x -E "$entry|_init|_fini|_edata|_end|__bss_start" || true)
    has_entry=$(dynsyms "$so" --defined-only | grep -c -x "$entry" || true)
    needs=$(dynsyms "$so" --undefined-only | grep -E '^rd_' || true)
    if [ "$has_entry" != 1 ]; then
        echo "FAIL: $so does not export $entry" >&2
        fail=1
    fi
    if [ -n "$extra" ]; then
        echo "FAIL: $so exports more than $entry (build it with -fvisibility=hidden):" >&2
        printf '    %s\n' $extra >&2
        fail=1
    fi
    if [ -n "$needs" ]; then
        echo "FAIL: $so needs engine symbols the binary does not export (use the host table):" >&2
        printf '    %s\n' $needs >&2
        fail=1
    fi
    if [ "$has_entry" = 1 ] && [ -z "$extra" ] && [ -z "$needs" ]; then
        echo "ok: $so exports $entry only and needs nothing of the engine"
    fi
done
exit "$fail"
