#!/usr/bin/env python3
"""Narrows a failing chaos run down to fewer faults (delta debugging).

    RECOVERYD_BINARY=build/bin/recoveryd python3 tests/chaos/shrink.py \\
        --tries 2 -- --seed 7 --duration 60 --agents 4

Runs run.py with the given arguments and ``--keep`` subsets of the seed's
schedule: first halves, then quarters, ..., then single faults, keeping any
subset that still fails (exit status 1; a run that broke, 2, counts as
passing). A subset counts as failing when any of ``--tries`` runs fails
(timing is not replayed, so a failure may need a few tries). Prints the
smallest failing subset found and the command that runs it. Each try is a
whole run: this takes a while.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import List

HERE = os.path.dirname(os.path.abspath(__file__))


def fails(run_args: List[str], keep: List[int], tries: int, out: str) -> bool:
    for n in range(tries):
        cmd = [sys.executable, os.path.join(HERE, "run.py"), *run_args,
               "--keep", ",".join(map(str, keep)) or "", "--out", f"{out}/k{len(keep)}-{n}"]
        rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        print(f"shrink: {len(keep)} faults {keep[:12]}{'...' if len(keep) > 12 else ''}: "
              f"{'fails' if rc == 1 else 'passes'}", flush=True)
        if rc == 1:
            return True
    return False


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tries", type=int, default=2, help="runs per subset")
    ap.add_argument("run_args", nargs=argparse.REMAINDER, help="-- then run.py's arguments")
    args = ap.parse_args()
    run_args = [a for a in args.run_args if a != "--"]
    if "--seed" not in run_args:
        ap.error("run.py's arguments must name the --seed")
    out = tempfile.mkdtemp(prefix="chaos-shrink-")
    first = os.path.join(out, "full")
    rc = subprocess.run([sys.executable, os.path.join(HERE, "run.py"), *run_args, "--out",
                         first]).returncode
    if rc != 1:
        print(f"shrink: the full run does not fail (exit {rc}): nothing to narrow down")
        return 0 if rc in (0, 77) else rc
    with open(os.path.join(first, "schedule.json")) as f:
        keep = list(range(len(json.load(f)["faults"])))
    chunk = max(1, len(keep) // 2)
    passed: set = set()  # subsets seen passing: not run again
    while chunk >= 1 and keep:
        i, shrunk = 0, False
        while i < len(keep):
            candidate = keep[:i] + keep[i + chunk:]
            if tuple(candidate) in passed:
                i += chunk
                continue
            if fails(run_args, candidate, args.tries, out):
                keep, shrunk = candidate, True
            else:
                passed.add(tuple(candidate))
                i += chunk
        if not shrunk:
            chunk //= 2
    print(f"shrink: {len(keep)} faults still fail: {keep}\n  python3 {HERE}/run.py "
          f"{' '.join(run_args)} --keep {','.join(map(str, keep))}\n  runs in {out}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
