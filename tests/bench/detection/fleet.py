#!/usr/bin/env python3
"""A fleet of agents with tasks and checkpoints, simulated against one
recoveryd over HTTP/1.1 keep-alive (standard library only). Two scenarios:

predicted (tests/bench/detection/predicted.sh): after the warm-up a share of
  the agents degrades (latency_ms ramps by --ramp ms per heartbeat from 20 ms
  past the metrics plugin's 5000 ms limit, so the trend predicts the failure
  before it comes). Reports, for the degrading agents, how many of their
  tasks moved (were revoked and handed to another agent) before the agent
  failed, and for the whole fleet the tasks lost (not held by a live agent at
  the end) and the checkpoints lost (a new attempt that resumed from an older
  version than its previous attempt had written, or a task whose newest
  checkpoint is older than the newest one the engine accepted).

storm (tests/bench/rebalance/run.sh): after the warm-up a share of the
  agents crashes (heartbeats stop); once their tasks run elsewhere they
  register again, empty. Reports the time from their return until every
  agent holds within 10% of its slots of the even load, the moves made
  (recoveryd_rebalance_moves_total), the most times one task was
  interrupted, and the checkpoints lost.

Prints one line per figure and PASS/FAIL per target; exits 0 when the run
took place whatever the figures, 1 on a setup error.
"""

import argparse
import http.client
import json
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple


@dataclass
class Held:
    attempt: int
    version: int


@dataclass
class Agent:
    node_id: str
    slots: int
    epoch: int = 0
    up: bool = True
    degrading: bool = False
    ramp: int = 0
    tasks: Dict[str, Held] = field(default_factory=dict)
    due: float = 0.0
    last_ckpt: float = 0.0
    failed_at: Optional[float] = None  # when the engine fenced it


@dataclass
class Task:
    task_id: str
    accepted: int = 0  # newest checkpoint version the engine accepted
    interruptions: int = 0
    lost_checkpoint: bool = False
    revoked_at: Dict[str, float] = field(default_factory=dict)  # agent -> time


class Engine:
    def __init__(self, url: str) -> None:
        host, port = url.replace("http://", "").split(":")
        self.host, self.port = host, int(port)
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)

    def call(self, method: str, path: str, body: Optional[dict] = None) -> Tuple[int, dict]:
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json"} if data else {}
        for attempt in range(3):
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                r = self.conn.getresponse()
                raw = r.read()
                try:
                    return r.status, json.loads(raw) if raw else {}
                except ValueError:
                    return r.status, {"text": raw.decode(errors="replace")}
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                if attempt == 2:
                    raise
        return 0, {}

    def metric(self, name: str) -> float:
        self.conn.request("GET", "/metrics")
        r = self.conn.getresponse()
        text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total


class Fleet:
    def __init__(self, o: argparse.Namespace) -> None:
        self.o = o
        self.e = Engine(o.url)
        self.rng = random.Random(o.seed)
        self.agents = [Agent(f"agent-{i:04d}", o.slots) for i in range(o.agents)]
        self.tasks: Dict[str, Task] = {}
        self.interval = o.interval_ms / 1000.0
        self.fenced = 0

    def register(self, a: Agent) -> None:
        st, j = self.e.call("POST", "/api/v1/nodes",
                            {"node_id": a.node_id, "capacity": {"slots": a.slots}})
        if st != 201:
            sys.exit(f"register {a.node_id}: {st} {j}")
        a.epoch, a.up, a.tasks, a.failed_at, a.ramp = int(j["epoch"]), True, {}, None, 0
        a.due = time.monotonic()

    def metrics_of(self, a: Agent) -> dict:
        lat = 20 + self.rng.uniform(-5, 5) + (self.o.ramp * a.ramp if a.degrading else 0)
        return {"error_rate": 0.01 + self.rng.uniform(0, 0.005), "latency_ms": lat,
                "cpu": 0.3 + self.rng.uniform(-0.02, 0.02), "mem": 0.4}

    def heartbeat(self, a: Agent, now: float) -> None:
        if a.degrading:
            a.ramp += 1
        st, j = self.e.call("POST", f"/api/v1/nodes/{a.node_id}/heartbeat",
                            {"epoch": a.epoch, "load": {"slots_used": len(a.tasks)},
                             "metrics": self.metrics_of(a)})
        if st == 409:  # fenced: failed or isolated; the process gives up
            self.fenced += 1
            a.up, a.failed_at = False, now
            for tid in a.tasks:
                self.tasks[tid].interruptions += 1
            a.tasks = {}
            return
        if st != 200:
            return
        for rev in j.get("revocations") or []:
            tid, att = rev["task_id"], int(rev["attempt"])
            h = a.tasks.get(tid)
            if h is not None and h.attempt == att:
                del a.tasks[tid]
                t = self.tasks[tid]
                t.interruptions += 1
                t.revoked_at[a.node_id] = now
        for asg in j.get("assignments") or []:
            tid, att = asg["task_id"], int(asg["attempt"])
            h = a.tasks.get(tid)
            if h is not None and h.attempt == att:
                continue
            ck = asg.get("checkpoint") or {}
            v = int(ck.get("version") or 0)
            t = self.tasks.get(tid)
            if t is None:
                continue
            if att > 1 and v < t.accepted:
                t.lost_checkpoint = True
            a.tasks[tid] = Held(att, v)

    def checkpoint(self, tid: str, h: Held) -> None:
        st, _ = self.e.call("PUT", f"/api/v1/tasks/{tid}/checkpoint",
                            {"attempt": h.attempt, "version": h.version + 1,
                             "data": {"v": h.version + 1}})
        if st == 200:
            h.version += 1
            t = self.tasks[tid]
            t.accepted = max(t.accepted, h.version)

    def round(self, now: float) -> None:
        for a in self.agents:
            if a.up and now >= a.due:
                a.due = now + self.interval
                self.heartbeat(a, now)
                if a.up and now - a.last_ckpt >= self.o.checkpoint_s:
                    a.last_ckpt = now
                    for tid, h in list(a.tasks.items()):
                        self.checkpoint(tid, h)

    def run_for(self, seconds: float, until: Optional[Callable[[], bool]] = None) -> bool:
        end = time.monotonic() + seconds
        n = 0
        while time.monotonic() < end:
            self.round(time.monotonic())
            n += 1
            if until is not None and n % 10 == 0 and until():
                return True
            time.sleep(0.01)
        return until is None

    def submit(self, n: int) -> None:
        for i in range(n):
            tid = f"5ca1ab1e-0000-4000-8000-{i:012d}"
            st, j = self.e.call("POST", "/api/v1/tasks", {"task_id": tid, "priority": 3})
            if st not in (200, 201):
                sys.exit(f"submit: {st} {j}")
            self.tasks[tid] = Task(tid)

    def held_by_live(self) -> Dict[str, str]:
        held: Dict[str, str] = {}
        for a in self.agents:
            if a.up:
                for tid in a.tasks:
                    held[tid] = a.node_id
        return held

    def engine_counts(self) -> Dict[str, Tuple[int, str]]:
        counts: Dict[str, Tuple[int, str]] = {}
        after = ""
        while True:
            st, j = self.e.call("GET", "/api/v1/nodes?limit=1000" +
                                (f"&cursor={after}" if after else ""))
            items = j.get("items") or []
            for nd in items:
                counts[nd["node_id"]] = (int(nd.get("tasks", 0)), nd.get("state", ""))
            nxt = j.get("next_cursor")
            if not nxt or not items:
                return counts
            after = nxt

    def final_checks(self) -> Tuple[int, int]:
        held = self.held_by_live()
        lost = sum(1 for tid in self.tasks if tid not in held)
        ck_lost = sum(1 for t in self.tasks.values() if t.lost_checkpoint)
        for tid, t in self.tasks.items():
            st, j = self.e.call("GET", f"/api/v1/tasks/{tid}")
            v = int((j.get("checkpoint") or {}).get("version") or 0)
            if st == 200 and v and v < t.accepted:
                ck_lost += 1
        return lost, ck_lost


def report(name: str, ok: bool, text: str) -> None:
    print(f"{'PASS' if ok else 'FAIL'} {name}: {text}")


def predicted(f: Fleet) -> None:
    o = f.o
    for a in f.agents:
        f.register(a)
    f.submit(o.agents * o.tasks_per_agent)
    f.run_for(o.warmup)
    step = max(1, round(100 / o.share))
    sick = [a for i, a in enumerate(f.agents) if i % step == step // 2]
    for a in sick:
        a.degrading = True
    t0 = time.monotonic()
    at_start = {a.node_id: set(a.tasks) for a in sick}
    f.run_for(o.duration, until=lambda: all(not a.up for a in sick))
    f.run_for(5)  # the last moves settle
    moved_first = total = 0
    lead: List[float] = []
    for a in sick:
        for tid in at_start[a.node_id]:
            total += 1
            rv = f.tasks[tid].revoked_at.get(a.node_id)
            if rv is not None and (a.failed_at is None or rv < a.failed_at):
                moved_first += 1
                if a.failed_at is not None:
                    lead.append(a.failed_at - rv)
    failed = [a for a in sick if a.failed_at is not None]
    lost, ck_lost = f.final_checks()
    healthy_drained = sum(1 for nd, (n, state) in f.engine_counts().items()
                          if state == "draining" and nd not in at_start)
    lead.sort()
    print(f"degrading agents: {len(sick)} ({o.share}%), failed {len(failed)} "
          f"(first {min((a.failed_at - t0 for a in failed), default=0):.1f} s after the ramp "
          f"began); their tasks at the start of the ramp: {total}, moved before their agent "
          f"failed: {moved_first}; lead time (moved -> agent failed) min "
          f"{lead[0] if lead else 0:.1f} s, median {lead[len(lead) // 2] if lead else 0:.1f} s")
    drained = f.e.metric('recoveryd_predicted_faults_total{outcome="drained"}')
    held = f.e.metric('recoveryd_predicted_faults_total{outcome="rate_limited"}')
    print(f"tasks {len(f.tasks)}: lost {lost}; checkpoints lost {ck_lost}; healthy agents "
          f"draining {healthy_drained}; drains {drained:.0f}, held by the rate limit {held:.0f}")
    report("degrading agents' tasks moved before they fail", total > 0 and moved_first == total,
           f"{moved_first}/{total}")
    report("tasks lost", lost == 0, str(lost))
    report("checkpoints lost", ck_lost == 0, str(ck_lost))


def storm(f: Fleet) -> None:
    o = f.o
    for a in f.agents:
        f.register(a)
    f.submit(o.agents * o.tasks_per_agent)
    f.run_for(o.warmup)
    step = max(1, round(100 / o.share))
    down = [a for i, a in enumerate(f.agents) if i % step == 0]
    for a in down:
        for tid in a.tasks:
            f.tasks[tid].interruptions += 1
        a.up, a.tasks = False, {}
    t_storm = time.monotonic()
    ok = f.run_for(120, until=lambda: len(f.held_by_live()) == len(f.tasks))
    recovered_s = time.monotonic() - t_storm
    if not ok:
        print(f"storm: tasks not all running again after 120 s ({len(f.held_by_live())})")
    moves0 = f.e.metric("recoveryd_rebalance_moves_total")
    for a in down:
        f.register(a)
    t_back = time.monotonic()
    even = o.tasks_per_agent
    tol = max(1, round(o.slots * 0.1))

    def balanced() -> bool:
        counts = f.engine_counts()
        return len(f.held_by_live()) == len(f.tasks) and all(
            abs(counts.get(a.node_id, (0, ""))[0] - even) <= tol for a in f.agents)

    ok = f.run_for(o.duration, until=balanced)
    converge_s = time.monotonic() - t_back
    f.run_for(3)
    moves = f.e.metric("recoveryd_rebalance_moves_total") - moves0
    counts = [c for c, _ in f.engine_counts().values()]
    lost, ck_lost = f.final_checks()
    worst = max(t.interruptions for t in f.tasks.values())
    print(f"{o.agents} agents x {o.slots} slots, {len(f.tasks)} tasks; storm: {len(down)} agents "
          f"down, every task running again after {recovered_s:.1f} s; they came back: "
          f"{'even' if ok else 'NOT even'} (each within {tol} of {even}) after {converge_s:.1f} s"
          f" (settle included), {moves:.0f} rebalancing moves; tasks per agent now "
          f"{min(counts)}-{max(counts)}")
    print(f"tasks lost {lost}, checkpoints lost {ck_lost}, most interruptions of one task "
          f"{worst} (the storm's move counts); agents fenced {f.fenced}")
    report("converged to within 10% of even load", ok, f"{converge_s:.1f} s")
    report("no task interrupted more than once", worst <= 1, str(worst))
    report("tasks lost", lost == 0, str(lost))
    report("checkpoints lost", ck_lost == 0, str(ck_lost))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--scenario", choices=["predicted", "storm"], required=True)
    p.add_argument("--agents", type=int, default=100)
    p.add_argument("--slots", type=int, default=4)
    p.add_argument("--tasks-per-agent", type=int, default=2)
    p.add_argument("--share", type=float, default=5, help="percent that degrade / crash")
    p.add_argument("--ramp", type=float, default=40, help="latency_ms added per heartbeat")
    p.add_argument("--interval-ms", type=int, default=500)
    p.add_argument("--checkpoint-s", type=float, default=1.0)
    p.add_argument("--warmup", type=float, default=20)
    p.add_argument("--duration", type=float, default=180)
    p.add_argument("--seed", type=int, default=1)
    o = p.parse_args()
    f = Fleet(o)
    (predicted if o.scenario == "predicted" else storm)(f)


if __name__ == "__main__":
    main()
