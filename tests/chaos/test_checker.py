"""The checker against small hand-written histories: each safety rule
finds the violation it names, and a clean history passes.

    python3 tests/chaos/test_checker.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import unittest
from typing import Any, Dict, List

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checker  # noqa: E402
from history import Recorder, load  # noqa: E402

T = "00000000-0000-4000-8000-000000000001"


def run(lines: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Checks a history made of (process, kind, t, fields) dicts."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "h.jsonl")
        import json

        with open(path, "w") as f:
            for ln in lines:
                f.write(json.dumps(ln) + "\n")
        ops, faults = load(path)
        return checker.check(ops, faults)


def ckpt(p: str, i: int, t0: float, t1: float, attempt: int, version: int, outcome: str = "ok",
         step: int = 0) -> List[Dict[str, Any]]:
    data = {"step": step or version, "by": p, "attempt": attempt}
    return [dict(type="invoke", p=p, i=i, t=t0, op="checkpoint", task=T, attempt=attempt,
                 version=version, data=data),
            dict(type=outcome, p=p, i=i, t=t1)]


def start(p: str, t: float, attempt: int, version: int) -> Dict[str, Any]:
    return dict(type="event", p=p, t=t, op="start", task=T, attempt=attempt, version=version)


def complete(p: str, i: int, t0: float, t1: float, attempt: int) -> List[Dict[str, Any]]:
    return [dict(type="invoke", p=p, i=i, t=t0, op="complete", task=T, attempt=attempt),
            dict(type="ok", p=p, i=i, t=t1)]


def read(t: float, attempt: int, version: int, step: int, by: str, state: str = "completed",
         ckpt_attempt: int = 0) -> Dict[str, Any]:
    return dict(type="event", p="runner", t=t, op="read", task=T, exists=True, state=state,
                attempt=attempt, steps=2, checkpoint_version=version,
                checkpoint_data={"step": step, "by": by, "attempt": ckpt_attempt or attempt},
                result={"steps": 2, "attempt": attempt, "by": by})


def kinds(res: Dict[str, Any]) -> List[str]:
    return sorted({v["kind"] for v in res["violations"]})


class CheckerTest(unittest.TestCase):
    def clean(self) -> List[Dict[str, Any]]:
        # Attempt 1 writes v1 and is moved; attempt 2 resumes at v1, writes
        # v2 and completes.
        return ([start("a.1", 1.0, 1, 0)] + ckpt("a.1", 1, 1.1, 1.2, 1, 1)
                + [start("b.1", 3.0, 2, 1)] + ckpt("b.1", 1, 3.1, 3.2, 2, 2)
                + complete("b.1", 2, 3.3, 3.4, 2) + [read(9.0, 2, 2, 2, "b.1")])

    def test_a_clean_history_is_valid(self) -> None:
        res = run(self.clean())
        self.assertTrue(res["valid"], res["violations"])
        self.assertEqual(res["stats"]["checkpoints"]["ok"], 2)

    def test_an_acknowledged_checkpoint_missing_at_the_end_is_lost(self) -> None:
        h = self.clean()[:-1] + [read(9.0, 2, 1, 1, "a.1", ckpt_attempt=1)]
        self.assertIn("lost-checkpoint", kinds(run(h)))

    def test_the_same_version_with_other_data_is_lost(self) -> None:
        h = self.clean()[:-1] + [read(9.0, 2, 2, 2, "someone-else")]
        self.assertIn("lost-checkpoint", kinds(run(h)))

    def test_a_version_acknowledged_after_a_higher_one_goes_backwards(self) -> None:
        h = ([start("a.1", 1.0, 1, 0)] + ckpt("a.1", 1, 1.1, 1.2, 1, 2, step=1)
             + ckpt("a.1", 2, 1.3, 1.4, 1, 1, step=2))
        self.assertIn("version-backwards", kinds(run(h)))

    def test_a_resume_below_an_acknowledged_write_misses_it(self) -> None:
        h = ([start("a.1", 1.0, 1, 0)] + ckpt("a.1", 1, 1.1, 1.2, 1, 1)
             + ckpt("a.1", 2, 1.3, 1.4, 1, 2) + [start("b.1", 3.0, 2, 1)])
        self.assertIn("resume-missed-ack", kinds(run(h)))

    def test_a_write_of_an_old_attempt_acknowledged_after_a_newer_started_is_stale(
            self) -> None:
        h = ([start("a.1", 1.0, 1, 0), start("b.1", 2.0, 2, 0)]
             + ckpt("a.1", 1, 2.5, 2.6, 1, 1))
        self.assertIn("stale-write-accepted", kinds(run(h)))

    def test_a_zombie_write_accepted_after_the_newer_attempt_was_observed_is_stale(
            self) -> None:
        obs = dict(type="event", p="runner", t=2.0, op="observe", task=T, attempt=2, version=1)
        h = [start("a.1", 1.0, 1, 0), obs] + ckpt("runner", 1, 2.1, 2.2, 1, 1001)
        self.assertIn("stale-write-accepted", kinds(run(h)))
        refused = [start("a.1", 1.0, 1, 0), obs] + ckpt("runner", 1, 2.1, 2.2, 1, 1001, "fail")
        self.assertNotIn("stale-write-accepted", kinds(run(refused)))

    def test_two_acknowledged_completions_are_a_double_completion(self) -> None:
        h = self.clean() + complete("a.1", 9, 3.5, 3.6, 1)
        self.assertIn("double-completion", kinds(run(h)))

    def test_a_task_not_completed_at_the_end_is_reported(self) -> None:
        h = self.clean()[:-1] + [read(9.0, 2, 2, 2, "b.1", state="running")]
        self.assertEqual(kinds(run(h)), ["not-completed"])

    def test_unknown_and_failed_writes_promise_nothing(self) -> None:
        # An unknown v3 (maybe applied) and a failed one: the final v2 is fine.
        h = self.clean()[:-1] + ckpt("a.1", 5, 2.0, 2.1, 1, 3, "unknown") + ckpt(
            "a.1", 6, 2.2, 2.3, 1, 3, "fail") + [read(9.0, 2, 2, 2, "b.1")]
        self.assertTrue(run(h)["valid"])

    def test_an_invoke_without_outcome_counts_as_unknown(self) -> None:
        h = self.clean() + [dict(type="invoke", p="a.1", i=7, t=2.0, op="checkpoint", task=T,
                                 attempt=1, version=5, data={})]
        res = run(h)
        self.assertTrue(res["valid"], res["violations"])
        self.assertEqual(res["stats"]["checkpoints"]["unknown"], 1)

    def test_writes_stuck_long_after_the_heal_are_reported(self) -> None:
        heal = dict(type="event", p="runner", t=4.0, op="heal")
        fast = self.clean()[:-1] + [heal] + ckpt("b.1", 8, 4.5, 5.0, 2, 3) + [
            read(9.0, 2, 3, 3, "b.1")]
        self.assertNotIn("no-progress-after-heal", kinds(run(fast)))
        slow = self.clean()[:-1] + [heal] + ckpt("b.1", 8, 4.5, 20.0, 2, 3) + [
            read(21.0, 2, 3, 3, "b.1")]
        self.assertIn("no-progress-after-heal", kinds(run(slow)))

    def test_two_leaders_in_one_term_are_reported(self) -> None:
        def role(t: float, r: str, role: str, term: int) -> Dict[str, Any]:
            return dict(type="event", p="runner", t=t, op="role", replica=r, role=role,
                        term=term)

        ok = self.clean() + [role(0.1, "replica-1", "leader", 2),
                             role(0.2, "replica-2", "follower", 2),
                             role(5.0, "replica-2", "leader", 3)]
        self.assertTrue(run(ok)["valid"])
        self.assertEqual(kinds(run(ok + [role(6.0, "replica-3", "leader", 3)])),
                         ["two-leaders"])

    def test_availability_is_split_by_partition_side(self) -> None:
        part = dict(type="nemesis", t=4.0, end=5.0, kind="partition", target="minority x",
                    minority_agents=["agent-2"])
        h = (self.clean()[:-1] + [part] + ckpt("agent-1.1", 11, 4.1, 4.2, 2, 9, "unknown")
             + ckpt("agent-1.2", 12, 4.3, 4.4, 2, 9, "ok")
             + ckpt("agent-2.1", 13, 4.5, 4.6, 2, 9, "unknown")
             + ckpt("agent-1.2", 14, 5.1, 5.2, 2, 9, "fail")  # after it
             + [read(9.0, 2, 9, 2, "b.1")])
        res = run(h)
        av = res["stats"]["availability"]
        self.assertEqual(av["partition_majority_side"], 0.5)
        self.assertEqual(av["partition_minority_side"], 0.0)
        self.assertEqual(res["stats"]["faults_by_kind"], {"partition": 1})

    # The disaster drill (backups.py): verify, restore, read back.
    B1, B2 = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"

    def verify(self, i: int, t: float, backup: str, verified: bool) -> List[Dict[str, Any]]:
        return [dict(type="invoke", p="runner", i=100 + i, t=t, op="verify", backup=backup),
                dict(type="ok", p="runner", i=100 + i, t=t + 0.1, verified=verified,
                     error=None if verified else "checksum mismatch")]

    def drill(self, version: int = 2, to_index: bool = False, backup: str = B1,
              drained: bool = True, rc: int = 0) -> List[Dict[str, Any]]:
        ev = dict(type="event", p="runner")
        return [dict(ev, t=10.0, op="archived", drained=drained, lag_entries=0)] + \
            self.verify(1, 10.1, self.B1, True) + self.verify(2, 10.3, self.B2, True) + \
            [dict(ev, t=11.0, op="restore", rc=rc, backup=backup, backup_index=5,
                  to_index=to_index, index=40),
             dict(ev, t=12.0, op="restored", task=T, state="completed", attempt=2,
                  checkpoint_version=version)]

    def damage(self, t: float, **kw: Any) -> Dict[str, Any]:
        return dict(type="nemesis", t=t, end=t + 0.1, kind="damage_backup", target="backups",
                    **kw)

    def test_a_drill_that_restores_everything_is_valid(self) -> None:
        res = run(self.clean() + self.drill())
        self.assertTrue(res["valid"], res["violations"])

    def test_a_damaged_backup_that_verifies_or_restores_is_reported(self) -> None:
        dmg = self.damage(5.0, damaged="image", file=f"backups/{self.B2}.img", backup=self.B2)
        h = self.clean() + [dmg] + self.drill()
        self.assertEqual(kinds(run(h)), ["damaged-backup-verified"])
        refused = self.clean() + [dmg] + self.drill()[:3] + self.verify(2, 10.3, self.B2,
                                                                        False) + self.drill()[5:]
        self.assertTrue(run(refused)["valid"], run(refused)["violations"])
        restored = self.clean() + [dmg] + self.drill(backup=self.B2)[:3] + self.verify(
            2, 10.3, self.B2, False) + self.drill(backup=self.B2)[5:]
        self.assertEqual(kinds(run(restored)), ["damaged-backup-verified"])

    def test_an_intact_backup_that_fails_its_verify_is_reported(self) -> None:
        h = self.clean() + self.drill()[:3] + self.verify(2, 10.3, self.B2, False) + \
            self.drill()[5:]
        self.assertEqual(kinds(run(h)), ["backup-not-verified"])

    def test_a_damaged_segment_after_the_backup_is_never_replayed_to_the_end(self) -> None:
        seg = self.damage(5.0, damaged="segment", file="archive/c/x.zst", first=10, last=20)
        self.assertEqual(kinds(run(self.clean() + [seg] + self.drill())),
                         ["damaged-segment-replayed"])
        # Up to an index before it: a prefix of the live state is fine.
        self.assertTrue(run(self.clean() + [seg] + self.drill(version=1, to_index=True))["valid"])
        # A segment the backup already covers is not replayed at all.
        old = self.damage(5.0, damaged="segment", file="archive/c/y.zst", first=1, last=5)
        self.assertTrue(run(self.clean() + [old] + self.drill())["valid"])

    def test_a_restore_that_lost_or_invented_a_write_is_reported(self) -> None:
        self.assertEqual(kinds(run(self.clean() + self.drill(version=1))), ["restore-lost"])
        # Not drained: what was restored may lag, never lead.
        self.assertTrue(run(self.clean() + self.drill(version=1, drained=False))["valid"])
        self.assertEqual(kinds(run(self.clean() + self.drill(version=3, to_index=True))),
                         ["restore-lost"])
        gone = self.clean() + self.drill()[:-1]
        self.assertEqual(kinds(run(gone)), ["restore-lost"])

    def test_a_backup_schedule_that_stalls_is_reported(self) -> None:
        def seen(t: float, b: str) -> Dict[str, Any]:
            return dict(type="event", p="runner", t=t, op="backup_seen", backup=b, index=1,
                        stall_s=60, interval_s=8)

        heal = dict(type="event", p="runner", t=200.0, op="heal")
        steady = [seen(10.0 + 8 * k, f"b{k}") for k in range(24)]
        self.assertTrue(run(self.clean() + steady + [heal] + self.drill())["valid"])
        stalled = steady[:5] + [seen(150.0, "late")]
        self.assertEqual(kinds(run(self.clean() + stalled + [heal] + self.drill())),
                         ["backups-stalled"])
        ends = steady[:5]  # none after index 4's until the heal
        self.assertEqual(kinds(run(self.clean() + ends + [heal] + self.drill())),
                         ["backups-stalled"])
        # One a second at an interval of 8 s: the schedule ran away.
        runaway = [seen(10.0 + k, f"r{k}") for k in range(190)]
        self.assertEqual(kinds(run(self.clean() + runaway + [heal] + self.drill())),
                         ["backups-runaway"])

    def test_no_restore_at_all_is_reported(self) -> None:
        self.assertEqual(kinds(run(self.clean() + self.drill(rc=1)[:-1])), ["no-restore"])

    def test_the_recorder_writes_what_load_reads(self) -> None:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "h.jsonl")
            r = Recorder(path, "p")
            i = r.invoke("checkpoint", task=T, attempt=1, version=1, data={"step": 1})
            r.done(i, "ok")
            r.event("heal")
            r.nemesis("cut", 1.0, 2.0, target="agent-1")
            r.close()
            ops, faults = load(path)
        self.assertEqual([(o.op, o.outcome, o.version) for o in ops],
                         [("checkpoint", "ok", 1), ("heal", "event", 0)])
        self.assertEqual([(f.kind, f.target) for f in faults], [("cut", "agent-1")])


if __name__ == "__main__":
    unittest.main()
