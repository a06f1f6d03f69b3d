#!/usr/bin/env python3
"""Every alert in deploy/prometheus-rules.yaml has, in
deploy/prometheus-rules.test.yaml, a promtool case where it fires (an
alert_rule_test with exp_alerts) and one where it must not (exp_alerts: []);
and every case names an alert that exists. Exit 0, or 1 naming what lacks.
Run by tests/deploy/prometheus_rules.sh after promtool itself."""
import sys

import yaml


def main(rules_path, tests_path):
    with open(rules_path) as f:
        rules = yaml.safe_load(f)
    with open(tests_path) as f:
        tests = yaml.safe_load(f)
    alerts = [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]
    fires, silent = set(), set()
    for case in tests["tests"]:
        for t in case.get("alert_rule_test", []):
            (fires if t.get("exp_alerts") else silent).add(t["alertname"])
    problems = []
    for a in alerts:
        if a not in fires:
            problems.append(f"{a}: no case where it fires")
        if a not in silent:
            problems.append(f"{a}: no case where it must not fire")
    for a in sorted((fires | silent) - set(alerts)):
        problems.append(f"{a}: tested, but no such alert in {rules_path}")
    for p in problems:
        print(p, file=sys.stderr)
    print(f"{len(alerts)} alerts, each with a firing and a silent case" if not problems
          else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
