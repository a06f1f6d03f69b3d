#!/bin/sh
# deploy/alertmanager.yml is a valid Alertmanager configuration (amtool
# check-config), with the grouping and inhibition docs/alerts.md describes.
# amtool comes from Debian's prometheus-alertmanager package
# (scripts/bootstrap); without it the test exits 77, which ctest reports as
# skipped. tests/integration/test_alertmanager.c runs a real Alertmanager
# with this file.
set -eu
root=${1:?usage: alertmanager_config.sh REPO_ROOT}
if ! command -v amtool >/dev/null 2>&1; then
    echo "amtool not found (Debian's prometheus-alertmanager package, scripts/bootstrap): skipped" >&2
    exit 77
fi
cfg="$root/deploy/alertmanager.yml"
amtool check-config "$cfg"
# The routing the docs promise: critical and major to the pager, the rest
# to the team's channel.
amtool config routes test --config.file="$cfg" --verify.receivers=oncall \
    alertname=AgentFault cluster=c1 node_id=a1 severity=critical 2>/dev/null
amtool config routes test --config.file="$cfg" --verify.receivers=oncall \
    alertname=NoQuorum cluster=c1 replica=rd1 severity=major 2>/dev/null
amtool config routes test --config.file="$cfg" --verify.receivers=team \
    alertname=AgentFault cluster=c1 node_id=a1 severity=minor 2>/dev/null
