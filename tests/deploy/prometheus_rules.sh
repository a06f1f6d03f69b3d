#!/bin/sh
# deploy/prometheus-rules.yaml: valid rules, and each alert's cases in
# deploy/prometheus-rules.test.yaml pass (promtool test rules). promtool
# comes from Debian's prometheus package (scripts/bootstrap); without it the
# test exits 77, which ctest reports as skipped.
set -eu
root=${1:?usage: prometheus_rules.sh REPO_ROOT}
if ! command -v promtool >/dev/null 2>&1; then
    echo "promtool not found (Debian's prometheus package, scripts/bootstrap): skipped" >&2
    exit 77
fi
cd "$root/deploy"
promtool check rules prometheus-rules.yaml
promtool test rules prometheus-rules.test.yaml
