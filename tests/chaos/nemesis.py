"""The nemesis: a fault schedule drawn from a seed, and its execution.

schedule() is a pure function of (seed, duration, replicas, agents): the
same arguments give the same faults at the same offsets, which is what
`make chaos SEED=...` replays (the processes' own timing is not replayed).

Faults (kind, target, duration):

- ``kill_replica``: kill -9 of a replica, restarted on the same data after.
- ``pause_replica``: SIGSTOP of a replica for longer than the election
  timeout (300 ms), then SIGCONT.
- ``kill_agent``: kill -9 of an agent process, restarted (same node id).
- ``pause_agent``: SIGSTOP of an agent, often longer than its lease (1.5 s):
  it wakes up with attempts the engine has moved.
- ``delay`` / ``loss`` / ``cut``: an agent's links to every replica through
  netproxy.NetProxy (seconds per chunk, reset probability, no answer).
- ``stall``: 2-4 s of delay for a short while: what the agent sends then
  (a checkpoint, a completion) reaches the engine after its lease ran out
  and its task may have moved, the classic stale write a fence must refuse.

By default at most one replica fault is active at a time, so a majority
stays up and the availability seen by agents is the majority side's
(``replica_faults`` allows more: the quorum goes away for a while). An agent has one
fault at a time.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple

REPLICA_KINDS = ("kill_replica", "pause_replica")
AGENT_KINDS = ("kill_agent", "pause_agent", "delay", "loss", "cut", "stall")
WEIGHTS = {"kill_replica": 2, "pause_replica": 2, "kill_agent": 2, "pause_agent": 2,
           "delay": 2, "loss": 2, "cut": 2, "stall": 2}


@dataclass
class Fault:
    at: float  # seconds after the nemesis starts
    kind: str
    target: int  # replica or agent index
    duration: float
    params: Dict[str, float]

    def describe(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)


def schedule(seed: int, duration: float, replicas: int, agents: int,
             kinds: Tuple[str, ...] = tuple(WEIGHTS), replica_faults: int = 1) -> List[Fault]:
    """Faults starting within [0, duration), every one over by duration;
    at most ``replica_faults`` replicas faulty at once (1 keeps a majority
    of three up; 2 takes the quorum away for a while)."""
    rng = random.Random(seed)
    out: List[Fault] = []
    busy_until: Dict[Tuple[str, int], float] = {}  # ("replica"|"agent", i) -> end
    names = [k for k in kinds if WEIGHTS.get(k)]
    weights = [WEIGHTS[k] for k in names]
    t = rng.uniform(0.5, 2.0)
    while t < duration:
        kind = rng.choices(names, weights)[0]
        d = round(rng.uniform(*_DURATIONS[kind]), 2)
        if t + d > duration:
            break
        params: Dict[str, float] = {}
        if kind == "delay":
            params["delay"] = round(rng.uniform(0.05, 0.6), 3)
        elif kind == "stall":
            params["delay"] = round(rng.uniform(2.0, 4.0), 3)
        elif kind == "loss":
            params["loss"] = round(rng.uniform(0.05, 0.3), 3)
        if kind in REPLICA_KINDS:
            target = rng.randrange(replicas)
            active = sum(1 for (k, _), end in busy_until.items() if k == "replica" and end > t)
            if active < replica_faults and busy_until.get(("replica", target), 0.0) <= t:
                out.append(Fault(round(t, 2), kind, target, d, params))
                busy_until[("replica", target)] = t + d + 0.5
        else:
            target = rng.randrange(agents)
            if busy_until.get(("agent", target), 0.0) <= t:
                out.append(Fault(round(t, 2), kind, target, d, params))
                busy_until[("agent", target)] = t + d + 0.2
        t += rng.uniform(0.3, 2.5)
    return out


_DURATIONS: Dict[str, Tuple[float, float]] = {
    "kill_replica": (0.5, 4.0),
    "pause_replica": (0.6, 4.0),
    "kill_agent": (0.2, 3.0),
    "pause_agent": (0.5, 4.0),
    "delay": (1.0, 6.0),
    "loss": (1.0, 6.0),
    "cut": (0.5, 4.0),
    "stall": (0.3, 1.5),
}


class Target(Protocol):
    """What the nemesis acts on (run.py's Replica and AgentProc)."""

    name: str

    def kill9(self) -> None: ...

    def restart(self) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def links(self, **kw: Any) -> None: ...


class Nemesis:
    """Runs a schedule in a thread; every fault goes to the history when it
    ends (with the times it really started and ended)."""

    def __init__(self, faults: List[Fault], replicas: List[Target], agents: List[Target],
                 record: Callable[..., None], log: Callable[[str], None] = print) -> None:
        self.faults = faults
        self.replicas = replicas
        self.agents = agents
        self.record = record
        self.log = log
        self._stop = threading.Event()
        self._active: List[Tuple[Fault, float]] = []  # (fault, real start)
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._idle = threading.Event()  # the schedule is over or stopped
        self._exit = threading.Event()
        self.errors: List[str] = []

    def _target(self, f: Fault) -> Target:
        return (self.replicas if f.kind in REPLICA_KINDS else self.agents)[f.target]

    def _begin(self, f: Fault) -> None:
        tg = self._target(f)
        if f.kind in ("kill_replica", "kill_agent"):
            tg.kill9()
        elif f.kind in ("pause_replica", "pause_agent"):
            tg.pause()
        elif f.kind in ("delay", "stall"):
            tg.links(delay=f.params["delay"])
        elif f.kind == "loss":
            tg.links(loss=f.params["loss"])
        elif f.kind == "cut":
            tg.links(cut=True)

    def _end(self, f: Fault) -> None:
        tg = self._target(f)
        if f.kind in ("kill_replica", "kill_agent"):
            tg.restart()
        elif f.kind in ("pause_replica", "pause_agent"):
            tg.resume()
        else:
            tg.links(delay=0.0, loss=0.0, cut=False)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="nemesis", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self._schedule()
        self._idle.set()
        # The processes restarted here die with this thread (the harness
        # sets PR_SET_PDEATHSIG, which follows the thread that forked):
        # it lives until close().
        self._exit.wait()

    def _schedule(self) -> None:
        t0 = time.monotonic()
        actions: List[Tuple[float, int, Fault]] = []
        for f in self.faults:
            actions.append((f.at, 1, f))
            actions.append((f.at + f.duration, 0, f))  # ends sort before starts
        actions.sort(key=lambda a: (a[0], a[1]))
        for at, is_start, f in actions:
            if self._stop.wait(max(0.0, t0 + at - time.monotonic())):
                return
            try:
                if is_start:
                    with self._lock:
                        self._active.append((f, time.monotonic()))
                    self.log(f"nemesis: +{f.kind} {self._target(f).name} "
                             f"for {f.duration}s {f.params or ''}")
                    self._begin(f)
                else:
                    self._finish(f)
            except Exception as e:  # a fault that could not be applied or healed
                self.errors.append(f"{f.kind} {self._target(f).name}: {e}")
                self.log(f"nemesis: error: {self.errors[-1]}")

    def _finish(self, f: Fault) -> None:
        with self._lock:
            found = [a for a in self._active if a[0] is f]
            if not found:
                return
            self._active.remove(found[0])
        self._end(f)
        self.record(f.kind, found[0][1], time.monotonic(), target=self._target(f).name,
                    **f.params)

    def stop_and_heal(self) -> None:
        """Stops the schedule and ends every active fault."""
        self._stop.set()
        self._idle.wait(60)
        with self._lock:
            active = [a[0] for a in self._active]
        for f in active:
            try:
                self._finish(f)
            except Exception as e:
                self.errors.append(f"healing {f.kind} {self._target(f).name}: {e}")

    def close(self) -> None:
        """Ends the thread (after the processes it started were stopped)."""
        self._exit.set()
        if self._thread is not None:
            self._thread.join(10)
