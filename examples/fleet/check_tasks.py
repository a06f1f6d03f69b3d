#!/usr/bin/env python3
"""Reads `recoveryctl tasks list --json --all` on stdin and checks the demo.

    check_tasks.py --nodes 0            prints the agents holding tasks
    check_tasks.py --count N            prints how many of the N tasks are not
                                        completed yet (N when the list is short)
    check_tasks.py --verify N STEPS     every one of the N tasks completed, each
                                        resumed from its last checkpoint; a line
                                        per task that moved; exit 1 otherwise

"Resumed from its last checkpoint": the task's newest checkpoint version is
exactly STEPS (one checkpoint per step; a step redone from an older
checkpoint would have written one more), and the attempt that completed it
ran exactly the steps after the checkpoint it was handed.
"""
import json
import sys


def main() -> int:
    items = json.load(sys.stdin).get("items", [])
    want = int(sys.argv[2])
    if sys.argv[1] == "--nodes":
        seen = []
        for t in items:
            n = t.get("node_id")
            if n and n not in seen:
                seen.append(n)
        print(" ".join(seen))
        return 0
    if sys.argv[1] == "--count":
        done = sum(1 for t in items if t.get("state") == "completed")
        print(max(want - done, 0) if len(items) >= want else want)
        return 0
    steps = int(sys.argv[3])
    moved = bad = 0
    for t in items:
        r = t.get("result") or {}
        ck = t.get("checkpoint") or {}
        version = ck.get("version") if isinstance(ck, dict) else None
        if version is None:
            version = t.get("checkpoint_version")
        ran = r.get("ran", [])
        resumed = r.get("resumed_at", -1)
        ok = t.get("state") == "completed" and version == steps and resumed + len(ran) == steps
        if t.get("attempt", 1) > 1:
            moved += 1
            print(f"  task {t['task_id'][:8]}: attempt {t['attempt']} on {r.get('agent')} resumed at "
                  f"step {resumed} of {steps} (checkpoint version {version})")
        if not ok:
            bad += 1
            print(f"  NOT from its last checkpoint: {json.dumps(t)[:400]}")
    print(f"demo: {len(items)} tasks completed, {moved} moved after a failure, "
          f"{bad} redid a checkpointed step or did not complete")
    return 0 if bad == 0 and len(items) == want else 1


if __name__ == "__main__":
    sys.exit(main())
