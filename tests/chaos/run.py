#!/usr/bin/env python3
"""A chaos run: replicas, agents, a workload, a nemesis, then the checker.

    RECOVERYD_BINARY=build/bin/recoveryd python3 tests/chaos/run.py \\
        --seed 7 --duration 60 --out /tmp/chaos-7

Starts ``--replicas`` recoveryd processes on loopback (one raft cluster) and
``--agents`` agent processes (agent.py, the Python SDK), each reaching every
replica through a proxy of its own (api/python/tests/netproxy.py). A submitter adds tasks at
``--rate`` per second while the nemesis (nemesis.py) runs the schedule drawn
from ``--seed`` for ``--duration`` seconds; then every fault is healed,
submissions stop, and the run waits up to ``--settle`` seconds for every
task to complete. The final state of every task is read through the API
into the history; then the disaster drill (backups.py: the replicas'
backup target verified and restored into a new replica, whose tasks are
read back), and checker.py judges it all. OUT gets history.jsonl,
schedule.json, result.json, run.svg, the backup target and the replicas',
agents' and restored replica's logs.

Exit status: 0 valid, 1 invalid (the seed and a history excerpt are
printed), 2 the run itself broke, 77 no recoveryd binary.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(REPO, "api", "python", "src"))
sys.path.insert(0, os.path.join(REPO, "api", "python", "tests"))
sys.path.insert(0, HERE)

import engine as eng  # noqa: E402  (api/python/tests: real recoveryd processes)
import backups  # noqa: E402
import checker  # noqa: E402
import nemesis  # noqa: E402
import plot  # noqa: E402
from history import Recorder, load  # noqa: E402
from netns import NetnsNet  # noqa: E402
from netproxy import Links, RaftNet  # noqa: E402
from recoveryd import Client, Conflict, NotFound, RecoverydError
from recoveryd.errors import BadRequest  # noqa: E402


# The engine's configuration for chaos runs. Poison-task detection is off in
# effect (16 failures within 1 s): a healthy task on agents the nemesis keeps
# failing is moved often, and the detector would fail it as poison (each
# re-registration of a delayed agent counts); that is its design, not what
# this suite checks. `--poison-default` leaves the poison section out (the
# engine's default, 3 failures in 10 min), to check the detector under
# faults. The detection block must be first (engine.py stretches the
# heartbeat there for sanitizer builds).
POISON_OFF_YAML = "  poison:\n    max_failures: 16\n    window: 1s\n"


def engine_yaml(poison_default: bool = False, store: Optional[str] = None) -> str:
    """With ``store``, every replica backs up and archives to that
    directory (backups.py)."""
    parts = backups.engine_yaml(store) if store else {"backup": "", "plugins": ""}
    return ("fault_tolerance:\n  detection:\n    failure_threshold: 3\n"
            + ("" if poison_default else POISON_OFF_YAML) + parts["backup"]
            # Snapshots, snapshot installs and closed segments within a
            # short run (a damage fault has them to hit).
            + "storage:\n  segment_size: 4MiB\n  snapshot_threshold: 512\n"
            "  snapshot_trailing: 128\n" + parts["plugins"])


ENGINE_YAML = engine_yaml()


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Replica:
    def __init__(self, e: eng.Engine, index: int, disk: Optional[LoopDisk] = None,
                 clock: Optional[FakeClock] = None) -> None:
        self.e = e
        self.name = f"replica-{index + 1}"
        self.disk = disk
        self.clock = clock

    def jump_clock(self, offset: float) -> Dict[str, Any]:
        """Sets the offset; what the replica's own clock then says
        (last_updated of its /api/v1/health/cluster, answered by the
        replica asked), as evidence that it jumped."""
        assert self.clock is not None, "a clock jump without libfaketime"
        self.clock.set(offset)
        seen = None
        end = time.monotonic() + 3.0
        while time.monotonic() < end:
            try:
                code, body = eng.http_json("GET", self.e.url + "/api/v1/health/cluster",
                                           timeout=0.5)
                stamp = datetime.datetime.strptime(body["last_updated"], "%Y-%m-%dT%H:%M:%S.%fZ")
                seen = stamp.replace(tzinfo=datetime.timezone.utc).timestamp() - time.time()
            except (OSError, KeyError, TypeError, ValueError):
                pass
            if seen is not None and abs(seen - offset) < 5:
                break
            time.sleep(0.2)
        return {"seen_offset": None if seen is None else round(seen)}

    def fill_disk(self) -> Dict[str, Any]:
        assert self.disk is not None, "disk_full without a loop disk"
        return self.disk.fill_up()

    def free_disk(self) -> None:
        assert self.disk is not None
        self.disk.free()
        if self.e.proc is not None and self.e.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with its disk full "
                               f"(status {self.e.proc.returncode}): {self.e.log_tail(5)}")

    def kill9(self) -> None:
        self.e.kill9()

    def restart(self) -> None:
        self.e.killed = False
        self.e.start()

    def pause(self) -> None:
        self.e.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.e.signal(signal.SIGCONT)

    def links(self, **kw: Any) -> None:
        raise NotImplementedError("a replica's links are the Network's")

    def damage(self, what: str, pick: float) -> Dict[str, Any]:
        """Flips 8 bytes of one file of its raft directory (it is down):
        ``what`` is segment, snapshot or metadata; a segment when there is
        none of that kind. ``pick`` (0-1, from the seed) picks the file and
        where in its written part. What was hit goes into the history."""
        raft = os.path.join(self.e.data_dir, "raft")
        if not os.path.isdir(raft):  # moved aside by a rejoin that has not started raft yet
            return {"file": None}
        files = sorted(os.listdir(raft))
        kinds = {
            "segment": [f for f in files if re.fullmatch(r"\d{16}-\d{16}|open-\d+", f)],
            "snapshot": [f for f in files if f.startswith("snapshot-")],
            "metadata": [f for f in files if f in ("metadata1", "metadata2")],
        }
        hit = what if kinds.get(what) else "segment"
        names = [f for f in kinds[hit] if os.path.getsize(os.path.join(raft, f)) >= 16]
        if not names:
            return {"file": None}
        name = names[int(pick * len(names)) % len(names)]
        path = os.path.join(raft, name)
        with open(path, "r+b") as f:
            data = f.read()
            end = len(data.rstrip(b"\0"))  # an open segment: its written part
            at = 8 + int(pick * max(1, end - 24))
            f.seek(at)
            f.write(bytes(b ^ 0xFF for b in data[at:at + 8]))
        return {"damaged": hit, "file": f"raft/{name}", "offset": at}


def may_mount() -> Optional[str]:
    """None when this process can mount loop filesystems, else why not."""
    if os.geteuid() != 0:
        return "not root (mounting a small filesystem under a replica needs CAP_SYS_ADMIN)"
    try:
        with open("/proc/self/status") as f:
            caps = next(int(ln.split()[1], 16) for ln in f if ln.startswith("CapEff:"))
    except (OSError, StopIteration, ValueError):
        caps = 1 << 21
    if not (caps >> 21) & 1:
        return "root without CAP_SYS_ADMIN (a container): no mount"
    if not shutil.which("mkfs.ext4"):
        return "no mkfs.ext4 (e2fsprogs)"
    return None


FAKETIME_LIBS = ("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
                 "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
                 "/usr/lib/faketime/libfaketimeMT.so.1")


def faketime_lib() -> Optional[str]:
    return next((p for p in FAKETIME_LIBS if os.path.exists(p)), None)


class FakeClock:
    """A replica's wall clock under libfaketime (Debian's faketime): the
    offset in a file it rereads every second; CLOCK_MONOTONIC stays real
    (an NTP step moves only the wall clock, and the history's times are
    monotonic)."""

    def __init__(self, e: eng.Engine, lib: str) -> None:
        self.path = os.path.join(e.dir, "faketime.rc")
        self.set(0)
        asan = os.environ.get("ASAN_OPTIONS", "")
        e.env.update({"LD_PRELOAD": lib, "FAKETIME_TIMESTAMP_FILE": self.path,
                      "FAKETIME_CACHE_DURATION": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                      # a sanitizer build: libfaketime comes before its runtime
                      "ASAN_OPTIONS": (asan + ":" if asan else "") + "verify_asan_link_order=0"})

    def set(self, offset: float) -> None:
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{offset:+.0f}\n")
        os.replace(tmp, self.path)


class LoopDisk:
    """A small ext4 image mounted on a replica's data directory, which
    disk_full fills (the engine answers 507 no_space and goes on)."""

    def __init__(self, e: eng.Engine, mib: int = 96) -> None:
        self.dir = e.data_dir
        self.image = os.path.join(e.dir, "disk.img")
        with open(self.image, "wb") as f:
            f.truncate(mib << 20)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", self.image], check=True,
                       capture_output=True)
        subprocess.run(["mount", "-o", "loop", self.image, self.dir], check=True,
                       capture_output=True)
        self.fill = os.path.join(self.dir, "chaos-fill")

    def fill_up(self) -> Dict[str, Any]:
        """Takes every free block; how much that was."""
        st = os.statvfs(self.dir)
        free = st.f_bavail * st.f_frsize
        taken = 0
        with open(self.fill, "wb", buffering=0) as f:
            try:
                os.posix_fallocate(f.fileno(), 0, max(free - (1 << 20), 4096))
                taken = os.fstat(f.fileno()).st_size
                f.seek(taken)
                while True:  # the last blocks, until ENOSPC
                    taken += f.write(b"\0" * 65536) or 0
            except OSError:
                pass
        return {"filled_mib": round(taken / (1 << 20), 1)}

    def free(self) -> None:
        try:
            os.unlink(self.fill)
        except FileNotFoundError:
            pass

    def close(self) -> None:
        subprocess.run(["umount", self.dir], capture_output=True)


class AgentProc:
    """An agent.py process; restarted processes get a new history name."""

    def __init__(self, index: int, links: Links, history: str, out: str) -> None:
        self.name = f"agent-{index + 1}"
        self.links_ = links
        self.history = history
        self.out = out
        self.incarnation = 0
        self.proc: Optional[subprocess.Popen] = None

    def start(self) -> None:
        self.incarnation += 1
        logf = open(os.path.join(self.out, f"{self.name}.log"), "ab")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, os.path.join(HERE, "agent.py"), "--id", self.name,
                 "--endpoints", ",".join(self.links_.urls), "--history", self.history,
                 "--process", f"{self.name}.{self.incarnation}"],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                preexec_fn=eng._pdeathsig)
        finally:
            logf.close()

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def restart(self) -> None:
        self.start()

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def links(self, **kw: Any) -> None:
        self.links_.set(**kw)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()


class Network:
    """The nemesis's hands on the network: the raft links between replicas
    (RaftNet) and the agents' links (Links), for replica link faults and
    partitions (nemesis.reachable says who reaches whom)."""

    def __init__(self, raft: RaftNet, agents: List[Links], engines: List[eng.Engine]) -> None:
        self.raft = raft
        self.agents = agents
        self.engines = engines

    def replica_links(self, k: int, outgoing: Optional[bool] = None, **kw: Any) -> None:
        for j in range(self.raft.n):
            if j != k and outgoing in (None, True):
                self.raft.set(k, j, **kw)
            if j != k and outgoing in (None, False):
                self.raft.set(j, k, **kw)

    def _leader(self) -> Optional[int]:
        for i, e in enumerate(self.engines):
            if e.role() == "leader":
                return i
        return None

    def partition(self, shape: str, order: List[int], homes: List[int]) -> Dict[str, Any]:
        n = self.raft.n
        leader = self._leader() if shape == "leader" else None
        conn = nemesis.reachable(shape, n, order, leader)
        for i in range(n):
            for j in range(n):
                if i != j:
                    self.raft.set(i, j, blocked=not conn[i][j])
        def sees(h: int) -> List[bool]:  # both ways
            return [r == h or (conn[h][r] and conn[r][h]) for r in range(n)]

        # A replica that sees a majority can lead one (a bridge's middle).
        quorate = [sum(sees(r)) > n // 2 for r in range(n)]
        cut_off = []
        for a, links in enumerate(self.agents):
            reach = sees(homes[a])
            for r in range(n):
                links.block(r, not reach[r])
            if not any(reach[r] and quorate[r] for r in range(n)):
                cut_off.append(f"agent-{a + 1}")
        if shape == "leader":
            who = f"leader replica-{(order[0] if leader is None else leader) + 1}"
        elif shape == "majority":
            who = "minority " + ",".join(f"replica-{i + 1}" for i in sorted(order[:n // 2]))
        else:
            who = (f"bridge replica-{order[0] + 1} | replica-{order[1] + 1} | "
                   + ",".join(f"replica-{i + 1}" for i in sorted(order[2:])))
        return {"target": who, "minority_agents": cut_off,
                "cut": [[i + 1, j + 1] for i in range(n) for j in range(n)
                        if i != j and not conn[i][j]]}

    def heal_partition(self) -> None:
        for i in range(self.raft.n):
            for j in range(self.raft.n):
                if i != j:
                    self.raft.set(i, j, blocked=False)
        for links in self.agents:
            for r in range(self.raft.n):
                links.block(r, False)

    def heal(self) -> None:
        self.heal_partition()
        self.raft.heal()
        for links in self.agents:
            links.heal()


class Background:
    """A thread running ``_run`` until stop()."""

    def __init__(self, name: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


class Submitter(Background):
    """Submits tasks at a steady rate, each submission in the history."""

    def __init__(self, client: Client, rec: Recorder, rate: float, steps: int,
                 step_ms: int) -> None:
        super().__init__("submitter")
        self.client = client
        self.rec = rec
        self.rate = rate
        self.payload = {"steps": steps, "step_ms": step_ms}
        self.ids: List[str] = []

    def _run(self) -> None:
        t0 = time.monotonic()
        n = 0
        while not self._stop.wait(max(0.0, t0 + n / self.rate - time.monotonic())):
            tid = f"00000000-0000-4000-8000-{n:012d}"  # the engine wants UUIDs
            n += 1
            self.ids.append(tid)
            op = self.rec.invoke("submit", task=tid)
            try:
                # Idempotent (the id is ours): tried again within retry_for.
                self.client.submit(self.payload, task_id=tid, max_attempts=1000)
            except (BadRequest, Conflict) as e:  # refused: nothing was created
                self.rec.done(op, "fail", error=f"{type(e).__name__}: {e}")
            except RecoverydError as e:
                self.rec.done(op, "unknown", error=f"{type(e).__name__}: {e}")
            else:
                self.rec.done(op, "ok")


class Zombie(Background):
    """A writer from the past: for every task seen on attempt b >= 2, one
    checkpoint write and one completion with attempt b-1 (the engine must
    answer 409 to both).
    The agents' SDK never sends such a write (it stops an attempt at its
    lease), so this is what tests the engine's fence itself. Each write is
    recorded after an ``observe`` event (what the engine said the attempt
    was), which the checker's stale-write rule reads like a start."""

    def __init__(self, client: Client, rec: Recorder, every: float = 0.5) -> None:
        super().__init__("zombie")
        self.client = client
        self.rec = rec
        self.every = every
        self.done: set = set()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                tasks = self.client.tasks()
            except RecoverydError:
                continue
            for t in tasks:
                if t.attempt < 2 or t.task_id in self.done or t.state == "completed":
                    continue
                self.done.add(t.task_id)
                v = t.checkpoint.version if t.checkpoint else 0
                self.rec.event("observe", task=t.task_id, attempt=t.attempt, version=v)
                body = {"attempt": t.attempt - 1, "version": v + 1000, "data": {"zombie": True}}
                op = self.rec.invoke("checkpoint", task=t.task_id, attempt=t.attempt - 1,
                                     version=v + 1000, data=body["data"])
                self._try(op, "PUT", f"/api/v1/tasks/{t.task_id}/checkpoint", body)
                # And a completion from the past, which must not end the task.
                op = self.rec.invoke("complete", task=t.task_id, attempt=t.attempt - 1,
                                     version=v + 1000)
                self._try(op, "POST", f"/api/v1/tasks/{t.task_id}/complete",
                          {"attempt": t.attempt - 1, "result": {"zombie": True}})

    def _try(self, op: int, method: str, path: str, body: Any) -> None:
        try:
            self.client._write(method, path, body, idempotent=True)
        except Conflict as e:
            self.rec.done(op, "fail", error=f"{e.code}: {e.message}")
        except RecoverydError as e:
            self.rec.done(op, "unknown", error=f"{type(e).__name__}: {e}")
        else:
            self.rec.done(op, "ok")


class RolePoller(Background):
    """Polls every replica's /health (directly, not through a proxy) and
    records each change of its role or term: the checker's evidence for at
    most one leader per term."""

    def __init__(self, engines: List[eng.Engine], rec: Recorder, every: float = 0.1) -> None:
        super().__init__("roles")
        self.engines = engines
        self.rec = rec
        self.every = every
        self._seen: dict = {}

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            for i, e in enumerate(self.engines):
                try:
                    code, body = eng.http_json("GET", e.url + "/health", timeout=0.3)
                except OSError:
                    continue
                if code != 200 or not isinstance(body, dict) or "term" not in body:
                    continue
                now = (body.get("role"), body.get("term"))
                if self._seen.get(i) != now:
                    self._seen[i] = now
                    self.rec.event("role", replica=f"replica-{i + 1}", role=now[0],
                                   term=now[1])


def final_read(client: Client, rec: Recorder, ids: List[str], steps: int) -> None:
    for tid in ids:
        try:
            t = client.task(tid)
        except NotFound:
            rec.event("read", task=tid, exists=False)
            continue
        data = None
        if t.checkpoint is not None:
            try:
                data = client.checkpoint(tid).data
            except NotFound:
                data = None
        rec.event("read", task=tid, exists=True, state=t.state, attempt=t.attempt,
                  failures=t.failures, node_id=t.node_id, result=t.result, steps=steps,
                  checkpoint_version=t.checkpoint.version if t.checkpoint else 0,
                  checkpoint_data=data)


def dump_state(client: Client, path: str) -> None:
    """The nodes and the tasks not completed, for a look at a stuck run."""
    try:
        state = {"fault_status": client.fault_status().__dict__,
                 "nodes": [n.__dict__ for n in client.nodes()],
                 "tasks_not_completed": [t.__dict__ for t in client.tasks()
                                         if t.state != "completed"]}
    except RecoverydError as e:
        state = {"error": str(e)}
    with open(path, "w") as f:
        json.dump(state, f, indent=1, default=str)


def settle(client: Client, ids: List[str], timeout: float) -> float:
    """Waits until every task that exists is completed; the time it took."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            left = [t for t in client.tasks() if t.state != "completed"]
        except RecoverydError:
            left = [None]  # type: ignore[list-item]
        if not left:
            break
        time.sleep(0.2)
    return time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--duration", type=float, default=60, help="seconds of faults")
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--agents", type=int, default=4)
    ap.add_argument("--rate", type=float, default=2.0, help="tasks submitted per second")
    ap.add_argument("--steps", type=int, default=6, help="checkpoints per task")
    ap.add_argument("--step-ms", type=int, default=150)
    ap.add_argument("--settle", type=float, default=60,
                    help="seconds after the heal for every task to complete")
    ap.add_argument("--recover-within", type=float, default=10,
                    help="seconds after the heal for the first acknowledged write")
    default_faults = ",".join(nemesis.ALL_KINDS)
    ap.add_argument("--faults", default=default_faults,
                    help="comma-separated fault kinds (default: all)")
    ap.add_argument("--replica-faults", type=int, default=1,
                    help="replicas faulty at once at most (2 of 3: no quorum for a while)")
    ap.add_argument("--keep", metavar="I,J,...",
                    help="run only these faults of the schedule (indices in schedule.json, "
                         "from 0): to narrow a failing seed down by hand")
    ap.add_argument("--no-zombie", dest="zombie", action="store_false",
                    help="no writes with superseded attempts (on by default)")
    ap.add_argument("--net", choices=("proxy", "netns"), default="proxy",
                    help="replica links through proxies (default), or replicas in network "
                         "namespaces with partitions as routes (root; netns.py)")
    ap.add_argument("--poison-default", action="store_true",
                    help="poison-task detection at the engine's default (3 failures in "
                         "10 min) instead of off in effect: a healthy task failed as poison "
                         "is then a not-completed violation")
    ap.add_argument("--no-backups", dest="backups", action="store_false",
                    help="no backup target, no damage_backup faults and no restore drill at "
                         "the end (on by default: backups.py)")
    ap.add_argument("--out", help="directory for the results (default: a new one in /tmp)")
    args = ap.parse_args()

    kinds = tuple(k for k in args.faults.split(",") if k)
    bad = [k for k in kinds if k not in nemesis.ALL_KINDS]
    if bad:
        ap.error(f"unknown fault kind(s) {bad}; known: {', '.join(nemesis.ALL_KINDS)}")
    if not eng.binary():
        print("chaos: RECOVERYD_BINARY is not set to an executable recoveryd: skipped")
        return 77
    # The schedule is a function of the seed, the duration and the counts.
    replay = (f"make chaos SEED={args.seed} DURATION={args.duration:g} "
              f"CHAOS_AGENTS={args.agents} CHAOS_RATE={args.rate:g}")
    if args.replicas != 3:
        replay += f" CHAOS_REPLICAS={args.replicas}"
    if args.net != "proxy":
        replay += f" CHAOS_NET={args.net}"
        why = NetnsNet.unavailable()
        if why:
            print(f"chaos: --net netns needs network namespaces ({why}): skipped")
            return 77
    if (args.replica_faults != 1 or args.faults != default_faults or args.poison_default
            or not args.backups):
        replay = (f"tests/chaos/run.py --seed {args.seed} --duration {args.duration:g} "
                  f"--agents {args.agents} --rate {args.rate:g} --replicas {args.replicas} "
                  f"--replica-faults {args.replica_faults} --faults {args.faults} "
                  f"--net {args.net}" + (" --poison-default" if args.poison_default else "")
                  + ("" if args.backups else " --no-backups"))
    faults = nemesis.schedule(args.seed, args.duration, args.replicas, args.agents, kinds,
                              args.replica_faults)
    if args.keep is not None:
        try:
            keep = {int(x) for x in args.keep.split(",") if x.strip()}
        except ValueError:
            ap.error(f"--keep {args.keep!r}: expected comma-separated fault indices")
        if any(k < 0 or k >= len(faults) for k in keep):
            ap.error(f"--keep {args.keep!r}: the schedule has faults 0 to {len(faults) - 1}")
        faults = [f for i, f in enumerate(faults) if i in keep]
        replay += f" --keep {args.keep}" if replay.startswith("tests/") else \
            f" (run.py's --keep {args.keep})"
    # Kinds this machine cannot do: their faults are dropped from the run
    # (the schedule stays the seed's) and said so, never passed silently.
    cannot = {"disk_full": may_mount(),
              "replica_clock": None if faketime_lib() else "no libfaketime (Debian's faketime)",
              "damage_backup": None if args.backups else "--no-backups: no backup target"}
    if args.net == "netns":  # routes cut; they neither delay nor lose part, nor cut one way
        for k in ("replica_delay", "replica_loss", "oneway"):
            cannot[k] = "not with --net netns (no queueing disciplines here: --net proxy)"
    skipped = {k: {"reason": why, "faults": sum(f.kind == k for f in faults)}
               for k, why in cannot.items() if why and k in kinds}
    faults = [f for f in faults if f.kind not in skipped]
    out = args.out or tempfile.mkdtemp(prefix=f"chaos-{args.seed}-")
    os.makedirs(out, exist_ok=True)
    hist = os.path.join(out, "history.jsonl")
    if os.path.exists(hist):
        os.unlink(hist)
    with open(os.path.join(out, "schedule.json"), "w") as f:
        json.dump({"seed": args.seed, "args": vars(args), "skipped": skipped,
                   "faults": [x.describe() for x in faults]}, f, indent=1)
    for k, sk in skipped.items():
        log(f"chaos: SKIPPED {sk['faults']} {k} fault(s): {sk['reason']}")
    log(f"chaos: seed {args.seed}, {len(faults)} faults over {args.duration:g} s, "
        f"{args.replicas} replicas, {args.agents} agents, results in {out}")

    rec = Recorder(hist, "runner")
    store = backups.Store(out) if args.backups else None
    yaml = engine_yaml(args.poison_default, store.dir if store else None)
    hosts: Optional[List[str]] = None
    if args.net == "netns":
        raft: Any = NetnsNet(args.replicas, tag=7)
        raft.setup()
        hosts = [raft.host(i) for i in range(args.replicas)]
        # Plain raft and an open API on the bridge this run made (nothing
        # else is on it), as on loopback in the proxy mode.
        cluster = eng.Cluster(args.replicas,
                              yaml + "security:\n  allow_unauthenticated: true\n",
                              cluster_extra="  tls:\n    insecure_plaintext: true\n",
                              hosts=hosts, wraps=[raft.wrap(i) for i in range(args.replicas)])
    else:
        raft = RaftNet(args.replicas, seed=args.seed)  # every raft link through a proxy
        cluster = eng.Cluster(args.replicas, yaml, raft_via=raft.port)
    agents: List[AgentProc] = []
    links: List[Links] = []
    nem: Optional[nemesis.Nemesis] = None
    sub: Optional[Submitter] = None
    roles: Optional[RolePoller] = None
    zombie: Optional[Zombie] = None
    seen: Optional[backups.Poller] = None
    broke: Optional[str] = None
    disks: List[Optional[LoopDisk]] = [None] * args.replicas
    clocks: List[Optional[FakeClock]] = [None] * args.replicas
    try:
        lib = faketime_lib()
        if "replica_clock" in kinds and lib and "replica_clock" not in skipped:
            clocks = [FakeClock(e, lib) for e in cluster.engines]
        if "disk_full" in kinds and "disk_full" not in skipped:
            for i, e in enumerate(cluster.engines):
                disks[i] = LoopDisk(e)
        cluster.start()
        roles = RolePoller(cluster.engines, rec)
        roles.start()
        if store is not None:
            seen = backups.Poller(cluster.urls, rec)
            seen.start()
        ports = [e.port for e in cluster.engines]
        for i in range(args.agents):
            ln = Links(ports, seed=args.seed * 100 + i, hosts=hosts)
            links.append(ln)
            a = AgentProc(i, ln, hist, out)
            agents.append(a)
            a.start()
        client = Client(cluster.urls, timeout=1.0, retry_for=5.0)
        eng.wait_for(lambda: len([n for n in client.nodes() if n.state == "alive"])
                     == args.agents, 30, "every agent registered")
        sub = Submitter(client, rec, args.rate, args.steps, args.step_ms)
        sub.start()
        if args.zombie:
            zombie = Zombie(Client(cluster.urls, timeout=1.0, retry_for=2.0), rec)
            zombie.start()
        time.sleep(2.0)  # a steady state before the first fault
        net = Network(raft, links, cluster.engines)
        nem = nemesis.Nemesis(faults, [Replica(e, i, disks[i], clocks[i])
                                       for i, e in enumerate(cluster.engines)],
                              agents,  # type: ignore[arg-type]
                              lambda kind, s, e, **kw: rec.nemesis(kind, s, e, **kw), log, net,
                              store)
        nem.start()
        time.sleep(args.duration)
        nem.stop_and_heal()
        if zombie is not None:
            zombie.stop()
        net.heal()
        sub.stop()
        if seen is not None:
            seen.stop()
        rec.event("heal")
        log(f"chaos: faults over, {len(sub.ids)} tasks submitted; settling")
        took = settle(client, sub.ids, args.settle * eng.TIME_FACTOR)
        log(f"chaos: settled after {took:.1f} s")
        final_read(client, rec, sub.ids, args.steps)
        dump_state(client, os.path.join(out, "final-state.json"))
        if store is not None:
            backups.drill(cluster, client, store, rec, out, log,
                          engine_yaml(args.poison_default))
        if nem.errors:
            broke = "; ".join(nem.errors)
    except Exception as e:  # the run broke (not the system under test's verdict)
        broke = f"{type(e).__name__}: {e}"
    finally:
        if nem is not None:
            nem.stop_and_heal()
        if sub is not None:
            sub.stop()
        if roles is not None:
            roles.stop()
        if seen is not None:
            seen.stop()
        if zombie is not None:
            zombie.stop()
        for a in agents:
            a.stop()
        for ln in links:
            ln.close()
        for i, e in enumerate(cluster.engines):
            try:
                shutil.copy(e.log_path, os.path.join(out, f"replica-{i + 1}.log"))
            except OSError:
                pass
        problems = [p for p in (e.stop_and_check() for e in cluster.engines) if p]
        for d in disks:
            if d is not None:
                d.close()
        cluster.cleanup()
        raft.close()
        if nem is not None:
            nem.close()
        rec.close()
    if broke:
        log(f"chaos: the run broke (seed {args.seed}): {broke}\n  replay: {replay}")
        return 2
    ops, hfaults = load(hist)
    res = checker.check(ops, hfaults, recover_within=args.recover_within * eng.TIME_FACTOR)
    res["seed"] = args.seed
    res["replay"] = replay
    res["engine_problems"] = problems
    res["skipped"] = skipped
    with open(os.path.join(out, "result.json"), "w") as f:
        json.dump(res, f, indent=1)
    plot.write_svg(os.path.join(out, "run.svg"), res["stats"], hfaults,
                   f"chaos seed {args.seed}")
    st = res["stats"]
    log(f"chaos: {st['checkpoints']['ok']}/{st['checkpoints']['tried']} checkpoints "
        f"acknowledged (p50 {st['checkpoints']['p50_ms']} ms, p99 "
        f"{st['checkpoints']['p99_ms']} ms), availability {st['availability']}, "
        f"{st['tasks_completed']} tasks completed, first write {st['recovery_after_heal_s']} s "
        f"after the heal, zombie writes {st['zombie_writes']}; {out}/result.json, {out}/run.svg")
    if problems:
        log("chaos: replica problems: " + "; ".join(problems))
    if not res["valid"]:
        log(f"chaos: INVALID (seed {args.seed}; replay: {replay})\n" + checker.excerpt(res))
        return 1
    if problems:
        return 1
    log(f"chaos: valid (seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
