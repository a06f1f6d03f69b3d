"""The chaos checker: judges a run from its history alone.

    python3 checker.py HISTORY [--healed-at T] [--json OUT]

Safety (every ``ok`` is an acknowledgement the engine gave an agent):

- ``lost-checkpoint``: an acknowledged checkpoint version is above the one
  the final read found, or the same version holds other data.
- ``version-backwards``: a checkpoint acknowledged after another one of the
  same task (real time: it was invoked after the other completed) carries a
  version not above it.
- ``resume-missed-ack``: an attempt started from a checkpoint version below
  one acknowledged to an older attempt (the engine fences an attempt before
  it assigns the next, so every write it accepted from the old one must be
  in what the new one gets).
- ``stale-write-accepted``: a write (checkpoint, completion) of attempt a was
  invoked after attempt b > a had started somewhere (or was observed
  through the API: run.py's zombie writer), and was acknowledged.
- ``two-leaders``: two replicas were seen leading in the same term (run.py
  polls every replica's /health: role and term).
- ``double-completion``: two attempts of one task were acknowledged as
  completing it, or the final read names another attempt than the one
  acknowledged, or a completed task's checkpoint is not at its last step.

Backups (the drill at the end of a run, backups.py; only when the history
has one):

- ``damaged-backup-verified``: a backup whose image or manifest the nemesis
  damaged verified, or was restored from.
- ``backup-not-verified``: a backup nothing damaged failed its verify.
- ``damaged-segment-replayed``: a restore to the end of the archive
  succeeded across an archive segment the nemesis damaged (after the
  backup it started from).
- ``no-restore``: no restore succeeded, though a backup verified.
- ``backups-stalled``: no new backup completed for longer than the run
  allows (``stall_s`` of its ``backup_seen`` events: 60 s at an 8-s
  interval), from the first one to the heal.
- ``backups-runaway``: more than twice the backups the interval allows
  (plus 3) between the first one seen and the heal.
- ``restore-lost``: restored to the end of a drained archive, a task the
  live cluster held is missing, at another checkpoint version, or (live
  completed) in another state; restored to an index, a task is ahead of
  the live cluster or unknown to it.

Liveness (after ``healed_at``, when the nemesis stopped and healed):

- ``not-completed``: a task that exists is not completed at the final read.
- ``no-progress-after-heal``: no write was acknowledged within
  ``recover_within`` seconds of the heal.

It also measures the availability seen by agents: acknowledged checkpoint
writes over all tried, with and without an active fault, per second, and
during partitions on the majority side and on the minority side (agents
that reach no replica which sees a majority: ``minority_agents``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from typing import Any, Dict, List, Optional

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from history import Fault, Op, load  # noqa: E402


class Violation:
    def __init__(self, kind: str, task: str, message: str, ops: List[Op]) -> None:
        self.kind = kind
        self.task = task
        self.message = message
        self.ops = ops

    def to_json(self) -> Dict[str, Any]:
        return {"kind": self.kind, "task": self.task, "message": self.message,
                "ops": [o.brief() for o in self.ops]}


def _pct(xs: List[float], q: float) -> Optional[float]:
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def check(ops: List[Op], faults: List[Fault], healed_at: Optional[float] = None,
          recover_within: float = 10.0) -> Dict[str, Any]:
    if healed_at is None:  # the runner records it in the history
        healed_at = next((o.invoke for o in ops if o.op == "heal"), None)
    by_task: Dict[str, List[Op]] = defaultdict(list)
    for o in ops:
        if o.task:
            by_task[o.task].append(o)
    v: List[Violation] = []
    for task, tops in sorted(by_task.items()):
        v.extend(_check_task(task, tops))
    # At most one leader per term (the replicas' roles as polled).
    leaders: Dict[int, List[Op]] = defaultdict(list)
    for o in ops:
        if o.op == "role" and o.fields.get("role") == "leader":
            leaders[int(o.fields.get("term") or 0)].append(o)
    for term, los in sorted(leaders.items()):
        who = sorted({str(o.fields.get("replica")) for o in los})
        if len(who) > 1:
            v.append(Violation("two-leaders", "", f"term {term} had leaders {who}",
                               [next(o for o in los if o.fields.get("replica") == w)
                                for w in who]))
    v.extend(_check_backups(ops, faults))
    # Liveness.
    if not any(o.op == "checkpoint" and o.outcome == "ok" for o in ops):
        v.append(Violation("no-work", "", "no checkpoint was acknowledged in the whole run", []))
    reads = [o for o in ops if o.op == "read"]
    for r in reads:
        if r.fields.get("state") != "completed" and r.fields.get("exists", True):
            v.append(Violation("not-completed", r.task,
                               f"state {r.fields.get('state')!r} at the final read", [r]))
    recovery = None
    if healed_at is not None:
        after = [o.complete for o in ops
                 if o.op == "checkpoint" and o.outcome == "ok" and o.invoke >= healed_at]
        if after:
            recovery = min(after) - healed_at
        written = any(o.op in ("checkpoint", "complete") and o.invoke >= healed_at for o in ops)
        if written and (recovery is None or recovery > recover_within):
            got = "none" if recovery is None else f"the first after {recovery:.1f} s"
            v.append(Violation("no-progress-after-heal", "",
                               f"no checkpoint acknowledged within {recover_within} s "
                               f"of the heal ({got})", []))
    return {"valid": not v, "violations": [x.to_json() for x in v],
            "stats": _stats(ops, faults, healed_at, recovery)}


def _check_task(task: str, tops: List[Op]) -> List[Violation]:
    out: List[Violation] = []
    acks = [o for o in tops if o.op == "checkpoint" and o.outcome == "ok"]
    starts = [o for o in tops if o.op == "start"]
    observed = starts + [o for o in tops if o.op == "observe"]
    done = [o for o in tops if o.op == "complete" and o.outcome == "ok"]
    reads = [o for o in tops if o.op == "read"]
    # Versions never backwards (real-time order of acknowledgements).
    for a in acks:
        for b in acks:
            if a.complete < b.invoke and b.version <= a.version:
                out.append(Violation("version-backwards", task,
                                     f"version {b.version} acknowledged after version "
                                     f"{a.version}", [a, b]))
    # A new attempt starts from every acknowledged write of older attempts.
    for s in starts:
        missed = [a for a in acks if a.attempt < s.attempt and a.version > s.version]
        if missed:
            worst = max(missed, key=lambda a: a.version)
            out.append(Violation("resume-missed-ack", task,
                                 f"attempt {s.attempt} started from version {s.version}, "
                                 f"version {worst.version} of attempt {worst.attempt} "
                                 f"was acknowledged", [worst, s]))
    # No write of an attempt acknowledged once a newer attempt was running.
    for w in acks + done:
        newer = [s for s in observed if s.attempt > w.attempt and s.complete < w.invoke]
        if newer:
            out.append(Violation("stale-write-accepted", task,
                                 f"{w.op} of attempt {w.attempt} acknowledged, invoked after "
                                 f"attempt {newer[0].attempt} existed", [newer[0], w]))
    # One completion.
    attempts = sorted({o.attempt for o in done})
    if len(attempts) > 1:
        out.append(Violation("double-completion", task,
                             f"attempts {attempts} were each acknowledged completing it", done))
    # The final read.
    for r in reads:
        f = r.fields
        if not f.get("exists", True):
            if acks or done:
                out.append(Violation("lost-checkpoint", task,
                                     "the task is gone at the final read", [r]))
            continue
        rv = int(f.get("checkpoint_version") or 0)
        if acks:
            top = max(acks, key=lambda a: a.version)
            if top.version > rv:
                out.append(Violation("lost-checkpoint", task,
                                     f"version {top.version} was acknowledged, the final read "
                                     f"has {rv}", [top, r]))
            same = [a for a in acks if a.version == rv]
            if same and all(a.fields.get("data") != f.get("checkpoint_data") for a in same):
                out.append(Violation("lost-checkpoint", task,
                                     f"version {rv} holds other data than was acknowledged",
                                     same[:2] + [r]))
        if f.get("state") == "completed":
            if attempts and r.attempt != attempts[-1]:
                out.append(Violation("double-completion", task,
                                     f"completed by attempt {r.attempt}, attempt "
                                     f"{attempts[-1]} was acknowledged", done + [r]))
            res = f.get("result") or {}
            if isinstance(res, dict) and res.get("attempt") not in (None, r.attempt):
                out.append(Violation("double-completion", task,
                                     f"the result is attempt {res.get('attempt')}'s, the task "
                                     f"says attempt {r.attempt}", [r]))
            data = f.get("checkpoint_data") or {}
            steps = f.get("steps")
            if steps is not None and isinstance(data, dict) and data.get("step") != steps:
                out.append(Violation("lost-checkpoint", task,
                                     f"completed with its checkpoint at step {data.get('step')} "
                                     f"of {steps}", [r]))
    return out


def _check_backups(ops: List[Op], faults: List[Fault]) -> List[Violation]:
    out: List[Violation] = []
    restores = [o for o in ops if o.op == "restore"]
    verifies = [o for o in ops if o.op == "verify" and o.outcome == "ok"]
    if not restores and not verifies:
        return out  # no drill in this run
    damaged = [f for f in faults if f.kind == "damage_backup" and f.fields.get("file")]
    # A backup's image or manifest damaged before the operation began.
    def hit(backup: Optional[str], before: float) -> List[Fault]:
        return [f for f in damaged if f.fields.get("backup") == backup and f.start < before]

    for o in verifies:
        b = o.fields.get("backup")
        if o.fields.get("verified") and hit(b, o.invoke):
            what = hit(b, o.invoke)[0].fields.get("file")
            out.append(Violation("damaged-backup-verified", "",
                                 f"backup {b} verified after {what} was damaged", [o]))
        elif not o.fields.get("verified") and not hit(b, o.invoke):
            out.append(Violation("backup-not-verified", "",
                                 f"backup {b} failed its verify, nothing damaged it: "
                                 f"{o.fields.get('error')}", [o]))
    seen = [o for o in ops if o.op == "backup_seen"]
    heal = next((o.invoke for o in ops if o.op == "heal"), None)
    if seen and heal is not None:
        times = [o.invoke for o in seen] + [heal]
        gaps = [(b - a, i) for i, (a, b) in enumerate(zip(times, times[1:]))]
        worst, i = max(gaps)
        limit = float(seen[0].fields.get("stall_s") or 60)
        if worst > limit:
            out.append(Violation("backups-stalled", "",
                                 f"no new backup for {worst:.0f} s after backup "
                                 f"{seen[i].fields.get('backup')} (index "
                                 f"{seen[i].fields.get('index')})", [seen[i]]))
        every = float(seen[0].fields.get("interval_s") or 0)
        span = heal - seen[0].invoke
        if every > 0 and len(seen) - 1 > 2 * span / every + 3:
            out.append(Violation("backups-runaway", "",
                                 f"{len(seen) - 1} backups in {span:.0f} s at an interval of "
                                 f"{every:g} s", seen[:2]))
    live = {o.task: o for o in ops if o.op == "read" and o.fields.get("exists", True)}
    drained = any(o.op == "archived" and o.fields.get("drained") for o in ops)
    chains = sorted({str(o.fields.get("chain", "")) for o in restores})
    for chain in chains:
        mine = [o for o in restores if str(o.fields.get("chain", "")) == chain]
        back = {o.task: o for o in ops
                if o.op == "restored" and str(o.fields.get("chain", "")) == chain}
        out.extend(_check_restore(chain, mine, back, live, damaged, hit, drained,
                                  any(o.fields.get("verified") for o in verifies)))
    for o in ops:
        if o.op == "restored_problem":
            out.append(Violation("restored-replica-problem", "", str(o.fields.get("problem")),
                                 [o]))
    return out


def _check_restore(chain: str, restores: List[Op], back: Dict[str, Op], live: Dict[str, Op],
                   damaged: List[Fault], hit: Any, drained: bool,
                   verified: bool) -> List[Violation]:
    """One chain of restores (backups.py's drill: from the newest backup,
    or the oldest): its last success against the live cluster's final read."""
    out: List[Violation] = []
    name = f"restore ({chain})" if chain else "restore"
    done = [o for o in restores if o.fields.get("rc") == 0]
    if not done:
        if verified:
            out.append(Violation("no-restore", "", f"no {name} succeeded though a backup "
                                 "verified", restores[-3:]))
        return out
    r = done[-1]
    b, at = r.fields.get("backup"), r.fields.get("backup_index") or 0
    if hit(b, r.invoke):
        out.append(Violation("damaged-backup-verified", "",
                             f"{name} from backup {b}, which was damaged", [r]))
    if not r.fields.get("to_index"):
        segs = [f for f in damaged if f.fields.get("damaged") == "segment"
                and int(f.fields.get("last") or 0) > at and f.start < r.invoke]
        if segs:
            out.append(Violation("damaged-segment-replayed", "",
                                 f"{name} to the end from backup {b} (index {at}) across "
                                 f"{segs[0].fields.get('file')}, which was damaged", [r]))
    whole = drained and not r.fields.get("to_index")
    for task, lo in sorted(live.items()):
        ro = back.get(task)
        lv = int(lo.fields.get("checkpoint_version") or 0)
        if ro is None:
            if whole:
                out.append(Violation("restore-lost", task, f"not in the state of {name}",
                                     [lo, r]))
            continue
        rv = int(ro.fields.get("checkpoint_version") or 0)
        if (whole and rv != lv) or rv > lv:
            out.append(Violation("restore-lost", task,
                                 f"{name} has checkpoint version {rv}, the live cluster "
                                 f"{lv}", [lo, ro]))
        elif whole and lo.fields.get("state") == "completed" and ro.fields.get("state") != \
                "completed":
            out.append(Violation("restore-lost", task,
                                 f"{name} has it {ro.fields.get('state')!r}, the live "
                                 f"cluster completed it", [lo, ro]))
    for task, ro in sorted(back.items()):
        if task not in live:
            out.append(Violation("restore-lost", task,
                                 f"in the state of {name}, unknown to the live cluster", [ro]))
    return out


def _stats(ops: List[Op], faults: List[Fault], healed_at: Optional[float],
           recovery: Optional[float]) -> Dict[str, Any]:
    # The agents' writes (the runner's zombie writes are refused on purpose).
    writes = [o for o in ops if o.op == "checkpoint" and o.process != "runner"]
    zombie = [o for o in ops if o.op in ("checkpoint", "complete") and o.process == "runner"]
    t0 = min((o.invoke for o in ops), default=0.0)

    def faulty(t: float) -> bool:
        return any(f.start <= t < f.end for f in faults)

    def avail(xs: List[Op]) -> Optional[float]:
        return round(sum(o.outcome == "ok" for o in xs) / len(xs), 4) if xs else None

    # During partitions: the agents next to a majority, and the others.
    sides: Dict[str, List[Op]] = {"majority": [], "minority": []}
    for f in faults:
        if f.kind != "partition":
            continue
        cut_off = set(f.fields.get("minority_agents") or [])
        for o in writes:
            if f.start <= o.invoke < f.end:
                node = o.process.rsplit(".", 1)[0]  # agent-2.3 -> agent-2
                sides["minority" if node in cut_off else "majority"].append(o)
    lat = [(o.complete - o.invoke) * 1000 for o in writes if o.outcome == "ok"]
    per_s: Dict[int, Dict[str, Any]] = {}
    for o in writes:
        end = o.complete if not math.isinf(o.complete) else o.invoke
        b = per_s.setdefault(int(end - t0), {"ok": 0, "failed": 0, "lat": []})
        if o.outcome == "ok":
            b["ok"] += 1
            b["lat"].append((o.complete - o.invoke) * 1000)
        else:
            b["failed"] += 1
    series = []
    for s in range(0, max(per_s) + 1 if per_s else 0):
        b = per_s.get(s, {"ok": 0, "failed": 0, "lat": []})
        series.append({"t": s, "ok": b["ok"], "failed": b["failed"],
                       "p50_ms": _round(_pct(b["lat"], 0.5)),
                       "p99_ms": _round(_pct(b["lat"], 0.99))})
    completions = [o for o in ops if o.op == "complete" and o.outcome == "ok"]
    return {
        "t0": t0,
        "operations": len(ops),
        "checkpoints": {"tried": len(writes), "ok": sum(o.outcome == "ok" for o in writes),
                        "fail": sum(o.outcome == "fail" for o in writes),
                        "unknown": sum(o.outcome == "unknown" for o in writes),
                        "p50_ms": _round(_pct(lat, 0.5)), "p99_ms": _round(_pct(lat, 0.99))},
        "availability": {"all": avail(writes),
                         "during_faults": avail([o for o in writes if faulty(o.invoke)]),
                         "without_faults": avail([o for o in writes if not faulty(o.invoke)]),
                         "partition_majority_side": avail(sides["majority"]),
                         "partition_minority_side": avail(sides["minority"])},
        "tasks_completed": len({o.task for o in completions}),
        "zombie_writes": {"tried": len(zombie), "refused": sum(o.outcome == "fail" for o in zombie),
                          "accepted": sum(o.outcome == "ok" for o in zombie)},
        "faults": len(faults),
        "faults_by_kind": {k: sum(f.kind == k for f in faults)
                           for k in sorted({f.kind for f in faults})},
        "healed_at": None if healed_at is None else round(healed_at - t0, 3),
        "recovery_after_heal_s": _round(recovery, 3),
        "last_completion_after_heal_s": _round(
            max((o.complete for o in completions), default=0.0) - healed_at, 3)
        if healed_at is not None and completions else None,
        "per_second": series,
    }


def _round(x: Optional[float], nd: int = 1) -> Optional[float]:
    return None if x is None else round(x, nd)


def excerpt(result: Dict[str, Any], limit: int = 5) -> str:
    """The violations, each with the few operations that show it."""
    lines = []
    t0 = result["stats"]["t0"]
    for x in result["violations"][:limit]:
        lines.append(f"  {x['kind']} task={x['task']}: {x['message']}")
        for o in x["ops"]:
            c = "-" if o["complete"] is None else f"{o['complete'] - t0:.3f}"
            extra = {k: o["fields"][k] for k in ("data", "state", "checkpoint_version", "error",
                                                 "replica", "role", "term")
                     if k in o["fields"]}
            lines.append(f"    {o['process']:<14} {o['op']:<10} {o['outcome']:<7} "
                         f"invoke={o['invoke'] - t0:.3f} complete={c} attempt={o['attempt']} "
                         f"version={o['version']} {json.dumps(extra) if extra else ''}")
    if len(result["violations"]) > limit:
        lines.append(f"  ... and {len(result['violations']) - limit} more")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("history")
    ap.add_argument("--healed-at", type=float,
                    help="monotonic time the faults stopped (default: the history's heal event)")
    ap.add_argument("--json", help="write the result here")
    args = ap.parse_args()
    ops, faults = load(args.history)
    res = check(ops, faults, args.healed_at)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    print("valid" if res["valid"] else "INVALID:\n" + excerpt(res))
    return 0 if res["valid"] else 1


if __name__ == "__main__":
    sys.exit(main())
