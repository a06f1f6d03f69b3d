#!/bin/sh
# ctest recoveryctl/completion_and_man: the bash completion completes the
# commands (with a minimal _init_completion when bash-completion is not
# installed), and the man page renders without a groff warning. 77 without
# bash.
#
#   check_completion_man.sh SOURCE_DIR
set -eu
dir=$1/api/c/recoveryctl
command -v bash >/dev/null || { echo "no bash: skipped"; exit 77; }

bash -s "$dir/recoveryctl.bash-completion" <<'EOS'
set -eu
if ! declare -F _init_completion >/dev/null; then
    # What bash-completion's helper sets, for these plain words.
    _init_completion() {
        words=("${COMP_WORDS[@]}")
        cword=$COMP_CWORD
        cur=${COMP_WORDS[COMP_CWORD]}
        prev=${COMP_WORDS[COMP_CWORD - 1]}
    }
fi
. "$1"
check() { # WANT WORDS...
    local want=$1
    shift
    COMP_WORDS=("$@")
    COMP_CWORD=$(($# - 1))
    COMPREPLY=()
    _recoveryctl
    if [ "${COMPREPLY[*]}" != "$want" ]; then
        echo "FAIL: completing '$*': got '${COMPREPLY[*]}', want '$want'" >&2
        exit 1
    fi
}
check "nodes" recoveryctl no
check "drain" recoveryctl nodes dr
check "retry" recoveryctl tasks ret
check "conflicts" recoveryctl confl
check "keep_progress" recoveryctl conflicts list --resolution keep_p
check "replicas" recoveryctl cluster rep
check "promote" recoveryctl cluster replicas pro
check "verify" recoveryctl --endpoints http://x:1 backups ver
check "voter" recoveryctl cluster replicas promote 2 --role vo
check "--json" recoveryctl status --js
echo "ok: completion"
EOS

if command -v groff >/dev/null; then
    warnings=$(groff -man -ww -z "$dir/recoveryctl.1" 2>&1)
    if [ -n "$warnings" ]; then
        echo "FAIL: recoveryctl.1: $warnings" >&2
        exit 1
    fi
    echo "ok: recoveryctl.1 renders without warnings"
fi
