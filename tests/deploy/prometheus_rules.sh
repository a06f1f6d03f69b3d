#!/bin/sh
# deploy/prometheus-rules.yaml: valid rules, each alert's cases in
# deploy/prometheus-rules.test.yaml pass (promtool test rules), and every
# alert has a case where it fires and one where it must not
# (tests/deploy/rules_cases.py). promtool comes from Debian's prometheus
# package, PyYAML from python3-yaml (scripts/bootstrap); without either the
# test exits 77, which ctest reports as skipped.
set -eu
root=${1:?usage: prometheus_rules.sh REPO_ROOT}
if ! command -v promtool >/dev/null 2>&1; then
    echo "promtool not found (Debian's prometheus package, scripts/bootstrap): skipped" >&2
    exit 77
fi
py=/usr/bin/python3
[ -x "$py" ] || py=python3
if ! "$py" -c 'import yaml' 2>/dev/null; then
    echo "python3 with PyYAML not found (python3-yaml, scripts/bootstrap): skipped" >&2
    exit 77
fi
cd "$root/deploy"
promtool check rules prometheus-rules.yaml
promtool test rules prometheus-rules.test.yaml
"$py" "$root/tests/deploy/rules_cases.py" prometheus-rules.yaml prometheus-rules.test.yaml
