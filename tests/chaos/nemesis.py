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
- ``replica_delay`` / ``replica_loss``: every raft link from and to one
  replica slowed (20-250 ms per chunk, around the 50 ms heartbeat and the
  300 ms election timeout) or lossy (a connection reset at a chunk).
- ``oneway``: what one replica sends the others is lost (``outgoing`` 1)
  or what they send it (``outgoing`` 0); the other direction works.
- ``damage``: kill -9 of a replica, 8 bytes flipped in a raft segment,
  a snapshot or libraft's metadata (``what``; the file and offset hit go
  into the history), and a restart: the engine must find it and rejoin
  from the others (docs/operations.md, "Damaged data directory").
- ``disk_full``: the small ext4 filesystem under one replica's data
  directory (run.py's LoopDisk, root only, else the kind is skipped and
  said so) is filled to the last block, then freed: the engine answers
  507 no_space and must neither lose an acknowledged write nor exit.
- ``replica_clock``: one replica's wall clock jumps ``offset`` seconds
  (30 s to an hour, forwards or backwards) and back at the end, through
  libfaketime (every replica runs under it when the kind is on; without
  Debian's faketime the kind is skipped and said so). The monotonic clock
  is left alone, as an NTP step would.
- ``damage_backup``: 8 bytes flipped in one object of the backup target
  (backups.py's Store: a backup's ``image`` or ``manifest``, or an archive
  ``segment``; ``what``), as a bad disk or copy would: it must never verify
  nor be restored from (the drill at the end of the run, backups.py). Drawn
  from a stream of its own (one per minute of faults, at least one), so
  the other kinds' schedule of a seed is what it was before it existed.
- ``partition``: the replicas split (``shape``): ``leader`` (the leader of
  the moment alone), ``majority`` (a minority of n // 2 replicas apart),
  ``bridge`` (two sides that each see one replica in the middle but not
  each other); each agent sits next to one replica (``homes``, drawn from
  the seed) and reaches only the replicas that replica reaches both ways.

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

REPLICA_KINDS = ("kill_replica", "pause_replica", "replica_delay", "replica_loss", "oneway",
                 "damage", "disk_full", "replica_clock")
CLUSTER_KINDS = ("partition",)  # every replica involved: no other replica fault meanwhile
AGENT_KINDS = ("kill_agent", "pause_agent", "delay", "loss", "cut", "stall")
WEIGHTS = {"kill_replica": 2, "pause_replica": 2, "kill_agent": 2, "pause_agent": 2,
           "delay": 2, "loss": 2, "cut": 2, "stall": 2, "replica_delay": 1,
           "replica_loss": 1, "oneway": 1, "partition": 2, "damage": 1,
           "disk_full": 1, "replica_clock": 1}
STORE_KINDS = ("damage_backup",)  # the backup target's objects (backups.py)
ALL_KINDS = tuple(WEIGHTS) + STORE_KINDS
DAMAGED = ("segment", "snapshot", "metadata")
BACKUP_DAMAGED = ("image", "manifest", "segment")
DAMAGE_REJOIN = 20.0  # seconds after a damage before the next: time to rejoin
SHAPES = ("leader", "majority", "bridge")


def reachable(shape: str, n: int, order: List[int], leader: Optional[int]) -> List[List[bool]]:
    """conn[i][j]: replica i's messages reach replica j under a partition.
    ``order`` is a permutation of the replicas (from the seed) that picks
    the sides; ``leader`` is the leader of the moment (``leader`` shape)."""
    conn = [[True] * n for _ in range(n)]

    def split(a: List[int]) -> None:
        for i in a:
            for j in range(n):
                if j not in a:
                    conn[i][j] = conn[j][i] = False

    if shape == "leader":
        split([order[0] if leader is None else leader])
    elif shape == "majority":
        split(order[:n // 2])
    elif shape == "bridge":  # order[0] | order[1] in the middle | the rest
        for j in order[2:]:
            conn[order[0]][j] = conn[j][order[0]] = False
    else:
        raise ValueError(f"unknown partition shape {shape!r}")
    return conn


@dataclass
class Fault:
    at: float  # seconds after the nemesis starts
    kind: str
    target: int  # replica or agent index (a partition: 0, the leader is found then)
    duration: float
    params: Dict[str, Any]

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
        params: Dict[str, Any] = {}
        if kind == "delay":
            params["delay"] = round(rng.uniform(0.05, 0.6), 3)
        elif kind == "stall":
            params["delay"] = round(rng.uniform(2.0, 4.0), 3)
        elif kind in ("loss", "replica_loss"):
            params["loss"] = round(rng.uniform(0.05, 0.3), 3)
        elif kind == "replica_delay":
            params["delay"] = round(rng.uniform(0.02, 0.25), 3)
        elif kind == "oneway":
            params["outgoing"] = rng.randrange(2)
        elif kind == "replica_clock":  # seconds, either way, then back
            params["offset"] = rng.choice((-1, 1)) * round(rng.uniform(30, 3600))
        elif kind == "damage":
            params["what"] = rng.choice(DAMAGED)
            params["pick"] = round(rng.random(), 4)
        elif kind == "partition":
            params["shape"] = rng.choice(SHAPES)
            params["order"] = rng.sample(range(replicas), replicas)
            params["homes"] = [rng.randrange(replicas) for _ in range(agents)]
        if kind in CLUSTER_KINDS:
            active = any(k == "replica" and end > t for (k, _), end in busy_until.items())
            if not active:
                out.append(Fault(round(t, 2), kind, 0, d, params))
                for r in range(replicas):
                    busy_until[("replica", r)] = t + d + 0.5
        elif kind in REPLICA_KINDS:
            target = rng.randrange(replicas)
            active = sum(1 for (k, _), end in busy_until.items() if k == "replica" and end > t)
            # A damaged replica rejoins from the others: never two at once
            # (two of three emptied leave no majority with the data, which
            # no engine may recover by itself).
            rejoining = kind == "damage" and t < busy_until.get(("damage", 0), 0.0)
            if (active < replica_faults and busy_until.get(("replica", target), 0.0) <= t
                    and not rejoining):
                out.append(Fault(round(t, 2), kind, target, d, params))
                busy_until[("replica", target)] = t + d + 0.5
                if kind == "damage":
                    busy_until[("damage", 0)] = t + d + DAMAGE_REJOIN
        else:
            target = rng.randrange(agents)
            if busy_until.get(("agent", target), 0.0) <= t:
                out.append(Fault(round(t, 2), kind, target, d, params))
                busy_until[("agent", target)] = t + d + 0.2
        t += rng.uniform(0.3, 2.5)
    if "damage_backup" in kinds:
        # Its own stream: the seed's other faults stay as they were drawn.
        brng = random.Random(seed * 7919 + 104729)
        for _ in range(max(1, int(duration // 60))):
            at = round(brng.uniform(0.2, 0.9) * duration, 2)
            out.append(Fault(at, "damage_backup", 0, 0.1,
                             {"what": brng.choice(BACKUP_DAMAGED),
                              "pick": round(brng.random(), 4)}))
        out.sort(key=lambda f: f.at)
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
    "replica_delay": (1.0, 5.0),
    "replica_loss": (1.0, 5.0),
    "oneway": (1.0, 4.0),
    "partition": (1.0, 6.0),
    "damage": (0.5, 3.0),
    "replica_clock": (2.0, 10.0),
    "disk_full": (8.0, 30.0),  # long enough for a snapshot or a new segment to need space
}


class Target(Protocol):
    """What the nemesis acts on (run.py's Replica and AgentProc)."""

    name: str

    def kill9(self) -> None: ...

    def restart(self) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def links(self, **kw: Any) -> None: ...

    def damage(self, what: str, pick: float) -> Dict[str, Any]: ...

    def fill_disk(self) -> Dict[str, Any]: ...

    def free_disk(self) -> None: ...

    def jump_clock(self, offset: float) -> Dict[str, Any]: ...


class Network(Protocol):
    """The raft links and the partitions (run.py's Network)."""

    def replica_links(self, k: int, outgoing: Optional[bool] = None, **kw: Any) -> None: ...

    def partition(self, shape: str, order: List[int], homes: List[int]) -> Dict[str, Any]: ...

    def heal_partition(self) -> None: ...


class Nemesis:
    """Runs a schedule in a thread; every fault goes to the history when it
    ends (with the times it really started and ended)."""

    def __init__(self, faults: List[Fault], replicas: List[Target], agents: List[Target],
                 record: Callable[..., None], log: Callable[[str], None] = print,
                 net: Optional[Network] = None, store: Optional[Target] = None) -> None:
        self.faults = faults
        self.net = net
        self.store = store
        self.replicas = replicas
        self.agents = agents
        self.record = record
        self.log = log
        self._stop = threading.Event()
        self._active: List[Tuple[Fault, float, Dict[str, Any]]] = []  # (fault, start, what)
        self._lock = threading.Lock()
        self._thread: Optional[threading.Thread] = None
        self._idle = threading.Event()  # the schedule is over or stopped
        self._exit = threading.Event()
        self.errors: List[str] = []

    def _target(self, f: Fault) -> Target:
        if f.kind in STORE_KINDS:
            if self.store is None:
                raise RuntimeError("no backup target to damage")
            return self.store
        return (self.agents if f.kind in AGENT_KINDS else self.replicas)[f.target]

    def _network(self) -> Network:
        if self.net is None:
            raise RuntimeError("no network to act on (replica links are not proxied)")
        return self.net

    def _begin(self, f: Fault) -> Dict[str, Any]:
        """Starts a fault; what it was in fact (a partition's sides)."""
        tg = self._target(f)
        if f.kind == "partition":
            return self._network().partition(f.params["shape"], f.params["order"],
                                             f.params["homes"])
        if f.kind == "replica_delay":
            self._network().replica_links(f.target, delay=f.params["delay"])
        elif f.kind == "replica_loss":
            self._network().replica_links(f.target, loss=f.params["loss"])
        elif f.kind == "oneway":
            self._network().replica_links(f.target, outgoing=bool(f.params["outgoing"]),
                                          cut=True)
        elif f.kind == "disk_full":
            return tg.fill_disk()
        elif f.kind == "replica_clock":
            return tg.jump_clock(f.params["offset"])
        elif f.kind == "damage":
            tg.kill9()
            return tg.damage(f.params["what"], f.params["pick"])
        elif f.kind == "damage_backup":
            return tg.damage(f.params["what"], f.params["pick"])
        elif f.kind in ("kill_replica", "kill_agent"):
            tg.kill9()
        elif f.kind in ("pause_replica", "pause_agent"):
            tg.pause()
        elif f.kind in ("delay", "stall"):
            tg.links(delay=f.params["delay"])
        elif f.kind == "loss":
            tg.links(loss=f.params["loss"])
        elif f.kind == "cut":
            tg.links(cut=True)
        return {}

    def _end(self, f: Fault) -> None:
        tg = self._target(f)
        if f.kind == "damage_backup":
            return  # nothing to heal: the damage stays, as on a real disk
        if f.kind == "partition":
            self._network().heal_partition()
        elif f.kind in ("replica_delay", "replica_loss", "oneway"):
            self._network().replica_links(f.target, delay=0.0, loss=0.0, cut=False)
        elif f.kind == "disk_full":
            tg.free_disk()
        elif f.kind == "replica_clock":
            tg.jump_clock(0)
        elif f.kind in ("kill_replica", "kill_agent", "damage"):
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
                    self.log(f"nemesis: +{f.kind} {self._target(f).name} "
                             f"for {f.duration}s {f.params or ''}")
                    seen: Dict[str, Any] = {}
                    with self._lock:  # healed at the end even if it fails half-way
                        self._active.append((f, time.monotonic(), seen))
                    seen.update(self._begin(f))
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
        what = dict(f.params)
        what.update(found[0][2])
        target = what.pop("target", self._target(f).name)
        self.record(f.kind, found[0][1], time.monotonic(), target=target, **what)

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
