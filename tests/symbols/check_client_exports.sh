#!/bin/sh
# librecoveryd-client's export surface (ctest symbols/client_exports): the
# library exports exactly the functions its header declares with RDC_API,
# all named rdc_*, and nothing else (it is built with hidden visibility).
#
#   check_client_exports.sh NM LIBRARY.so HEADER
set -eu

if [ "$#" -ne 3 ]; then
    echo "usage: $0 NM LIBRARY.so HEADER" >&2
    exit 2
fi
nm=$1
lib=$2
header=$3

out=$("$nm" -D --defined-only "$lib") || {
    echo "FAIL: $nm -D --defined-only $lib failed" >&2
    exit 1
}
exported=$(printf '%s\n' "$out" | awk 'NF { sub(/@.*/, "", $NF); print $NF }' | sort -u)
declared=$(grep -E '^RDC_API ' "$header" | sed -E 's/.*[ *](rdc_[a-z_0-9]+)\(.*/\1/' | sort -u)
if [ -z "$declared" ]; then
    echo "FAIL: no RDC_API declaration found in $header" >&2
    exit 1
fi
if [ "$exported" != "$declared" ]; then
    echo "FAIL: $lib exports other symbols than $header declares:" >&2
    printf '%s\n' "$exported" >"${TMPDIR:-/tmp}/rdc_exported.$$"
    printf '%s\n' "$declared" >"${TMPDIR:-/tmp}/rdc_declared.$$"
    diff "${TMPDIR:-/tmp}/rdc_declared.$$" "${TMPDIR:-/tmp}/rdc_exported.$$" >&2 || true
    rm -f "${TMPDIR:-/tmp}/rdc_exported.$$" "${TMPDIR:-/tmp}/rdc_declared.$$"
    exit 1
fi
echo "ok: $lib exports the $(printf '%s\n' "$declared" | wc -l) rdc_* functions of $header and nothing else"
