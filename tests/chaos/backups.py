"""Backups under chaos: a file target the replicas write to, the nemesis's
damage to its objects (``damage_backup``), and the disaster drill at the
end of a run.

Every replica is configured with one ``file`` backup target in a directory
outside every replica's own (``Store.dir``), as a shared bucket would be:
the leader of the moment takes a backup every few seconds and archives
every applied command within a second (docs/backup.md), through every kill,
pause, partition and damaged data directory the nemesis deals the
replicas.

``damage_backup`` flips 8 bytes of one object of that target (a backup's
image or manifest, or an archive segment), as a bad disk or a bad copy
would. The drill, once the faults are over and the tasks have settled:

1. waits for the archive to hold every applied command (the leader's
   ``recoveryd_archive_lag_entries`` at 0: event ``archived``);
2. verifies every completed backup through the API (events ``verify``);
3. restores the target into a new data directory with ``recoveryd
   restore``, as an operator would after losing every replica: to the end
   of the archive first; when it refuses a damaged backup, from the newest
   other backup that verified; when it refuses a damaged archive segment,
   up to the index it names (events ``restore``);
4. starts one replica on what was restored and reads every task back
   (events ``restored``).

Steps 3-4 run twice (``chain``): from the newest backup, as an operator
would, and from the oldest that verified, which replays the archive of
the whole run (every leader's segments, across every damaged one).

checker.py judges it: a damaged backup never verifies nor restores, an
intact one verifies, a damaged segment is never replayed, and the restored
state is the live cluster's final state (to the end of an intact archive:
every task in the same state at the same checkpoint version, nothing lost)
or a prefix of it (to an index before a damaged segment).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from typing import Any, Callable, Dict, List, Optional

import engine as eng  # api/python/tests
from recoveryd import Client, NotFound, RecoverydError

INTERVAL_S = 8  # a backup this often: several per run, each one a restore point
INTERVAL = f"{INTERVAL_S}s"
DAMAGED = ("image", "manifest", "segment")


def engine_yaml(store_dir: str) -> Dict[str, str]:
    """The parts of a replica's configuration: the lines under
    fault_tolerance: (``backup``) and the whole plugins section (the
    built-in instances plus the target)."""
    backup = ("  backup:\n"
              f"    interval: {INTERVAL}\n"
              "    retention_period: 1h\n"
              "    keep_min: 4\n"
              "    cpu_share: 100%\n"
              "    archive:\n"
              "      max_delay: 1s\n")
    plugins = ("plugins:\n  instances:\n"
               "    - {name: heartbeat, required: true}\n"
               "    - {name: health_probe}\n"
               "    - {name: metrics}\n"
               "    - {name: log}\n"
               f"    - {{name: chaos_backups, plugin: file, config: {{dir: \"{store_dir}\"}}}}\n")
    return {"backup": backup, "plugins": plugins}


class Store:
    """The backup target's directory, as the nemesis's target."""

    name = "backups"

    def __init__(self, root: str) -> None:
        self.dir = os.path.join(root, "backups-target")
        os.makedirs(self.dir, exist_ok=True)

    def objects(self, what: str) -> List[str]:
        """Paths (relative to the target) of the finished objects of a kind."""
        if what in ("image", "manifest"):
            sub, ext = "backups", (".img" if what == "image" else ".json")
            base = os.path.join(self.dir, sub)
            names = sorted(os.listdir(base)) if os.path.isdir(base) else []
            return [f"{sub}/{n}" for n in names if n.endswith(ext)]
        out = []
        base = os.path.join(self.dir, "archive")
        for cid in sorted(os.listdir(base)) if os.path.isdir(base) else []:
            for n in sorted(os.listdir(os.path.join(base, cid))):
                if re.fullmatch(r"\d{20}-\d{20}\.zst", n):
                    out.append(f"archive/{cid}/{n}")
        return out

    def damage(self, what: str, pick: float) -> Dict[str, Any]:
        """Flips 8 bytes of one object of kind ``what`` (another kind when
        there is none yet); ``pick`` (0-1, from the seed) picks the object
        and where in it. What was hit goes into the history."""
        kinds = [what] + [k for k in DAMAGED if k != what]
        hit = next((k for k in kinds if self.objects(k)), None)
        if hit is None:
            return {"file": None}
        names = self.objects(hit)
        rel = names[int(pick * len(names)) % len(names)]
        path = os.path.join(self.dir, rel)
        with open(path, "r+b") as f:
            data = f.read()
            if len(data) < 16:
                return {"file": None}
            at = 4 + int(pick * (len(data) - 12))
            f.seek(at)
            f.write(bytes(b ^ 0xFF for b in data[at:at + 8]))
        seen: Dict[str, Any] = {"damaged": hit, "file": rel, "offset": at}
        if hit == "segment":
            first, last = re.findall(r"\d{20}", os.path.basename(rel))
            seen.update(first=int(first), last=int(last))
        else:
            seen["backup"] = os.path.basename(rel).rsplit(".", 1)[0]
        return seen


def _archive_lag(e: eng.Engine) -> Optional[int]:
    try:
        with urllib.request.urlopen(e.url + "/metrics", timeout=1.0) as r:
            text = r.read().decode()
    except OSError:
        return None
    m = re.search(r"^recoveryd_archive_lag_entries (\d+)", text, re.M)
    return int(m.group(1)) if m else None


def drill(cluster: eng.Cluster, client: Client, store: Store, rec: Any, out: str,
          log: Callable[[str], None], base_yaml: str) -> None:
    """The disaster drill (module docstring); every step into the history."""
    leader = cluster.leader(20)
    deadline = time.monotonic() + 20 * eng.TIME_FACTOR
    lag = _archive_lag(leader)
    while (lag is None or lag > 0) and time.monotonic() < deadline:
        time.sleep(0.1)
        lag = _archive_lag(leader)
    rec.event("archived", lag_entries=lag, drained=lag == 0)

    try:
        backups = client.backups()
    except RecoverydError as e:
        rec.event("verify", error=f"listing the backups: {e}")
        backups = []
    good: List[Any] = []
    for b in backups:
        if b.status != "completed":
            continue
        op = rec.invoke("verify", backup=b.backup_id, index=b.index)
        try:
            v = client.verify_backup(b.backup_id)
        except NotFound:
            rec.done(op, "fail", error="gone (retention)")
            continue
        except RecoverydError as e:
            rec.done(op, "unknown", error=f"{type(e).__name__}: {e}")
            continue
        rec.done(op, "ok", verified=v.verified, error=v.error)
        if v.verified:
            good.append(b)
    good.sort(key=lambda b: b.index, reverse=True)

    # As an operator would: the newest, then what the refusals say; and
    # from the oldest backup that verified, which replays the whole run's
    # archive (every leader's segments, across every damaged one).
    _restore_chain("newest", None, good, store, rec, out, log, base_yaml)
    if good and good[-1].backup_id != good[0].backup_id:
        _restore_chain("oldest", good[-1].backup_id, good, store, rec, out, log, base_yaml)


def _restore_chain(chain: str, backup: Optional[str], good: List[Any], store: Store, rec: Any,
                   out: str, log: Callable[[str], None], base_yaml: str) -> None:
    """Restores (``backup``, or the newest), following what each refusal
    says, into a new replica; reads its tasks back. Events carry ``chain``."""
    binary = eng.binary()
    assert binary
    plugins = os.path.join(os.path.dirname(os.path.dirname(binary)), "plugins")
    target = eng.Engine(base_yaml)
    to_index: Optional[str] = None  # --to-index, once a segment was refused
    refused: List[str] = []
    restored = False
    for attempt in range(1, 6):
        if os.listdir(target.data_dir):
            raise RuntimeError(f"a refused restore left files in {target.data_dir}")
        args = (["--backup", backup] if backup else []) + (["--to-index", to_index]
                                                           if to_index else [])
        argv = [binary, "restore", "--from", f"file://{store.dir}", "--data-dir",
                target.data_dir, "--raft-address", f"127.0.0.1:{target.raft_port}",
                "--plugins-dir", plugins, *args]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=120 * eng.TIME_FACTOR)
        m = re.search(r"restore: backup (\S+) of cluster \S+: index (\d+)", p.stdout)
        at = re.search(r"state at index (\d+)", p.stdout)
        # A hole (a leader bridged a gap with a backup): a prefix, as with --to-index.
        hole = "the archive has a hole" in p.stdout
        rec.event("restore", chain=chain, attempt=attempt, args=args, rc=p.returncode,
                  backup=m.group(1) if m else None,
                  backup_index=int(m.group(2)) if m else None,
                  index=int(at.group(1)) if at else None,
                  to_index=to_index is not None or hole, hole=hole,
                  stdout=p.stdout[-2000:], stderr=p.stderr[-2000:])
        said = (p.stderr.strip() or p.stdout.strip() or "-").splitlines()[-1]
        log(f"chaos: restore ({chain}) {' '.join(args) or '(the newest, to the end)'}: exit "
            f"{p.returncode}: {said[:300]}")
        if p.returncode == 0:
            restored = True
            break
        seg = re.search(r"\(--to-index (\d+)\)", p.stderr)
        dmg = re.search(r"backup (\S+) is damaged", p.stderr)
        if seg and to_index is None:  # the same backup, up to before the segment
            to_index = seg.group(1)
            continue
        refused.append(dmg.group(1) if dmg else (backup or ""))
        nxt = next((b for b in good if b.backup_id not in refused), None)
        if nxt is None:
            break
        backup, to_index = nxt.backup_id, None
    if not restored:
        rec.event("restored_none", chain=chain)
        target.cleanup()
        return
    try:
        target.start()
        eng.wait_for(target.ready, 30, "the restored replica ready")
        rc = Client([target.url], timeout=2.0, retry_for=10.0)
        for t in rc.tasks():
            rec.event("restored", chain=chain, task=t.task_id, state=t.state,
                      attempt=t.attempt,
                      checkpoint_version=t.checkpoint.version if t.checkpoint else 0)
        problem = target.stop_and_check()
        if problem:
            rec.event("restored_problem", chain=chain, problem=problem)
    finally:
        try:
            shutil.copy(target.log_path, os.path.join(out, f"restored-{chain}.log"))
        except OSError:
            pass
        target.cleanup()


STALL_S = 60.0  # longest wait for a new backup the checker lets pass (interval 8 s)


class Poller(threading.Thread):
    """Records every new newest completed backup (``backup_seen``) as any replica
    answers, once a second: the checker's evidence that the schedule went
    on through the faults (``backups-stalled``)."""

    def __init__(self, urls: List[str], rec: Any, every: float = 1.0) -> None:
        super().__init__(name="backups", daemon=True)
        self.urls = urls
        self.rec = rec
        self.every = every
        self._halt = threading.Event()
        self._seen: Optional[str] = None

    def run(self) -> None:
        while not self._halt.wait(self.every):
            for url in self.urls:
                try:
                    code, body = eng.http_json(
                        "GET", url + "/api/v1/backups?limit=1&stale=true&status=completed",
                        timeout=0.5)
                except OSError:
                    continue
                items = body.get("items") if code == 200 and isinstance(body, dict) else None
                if not items:
                    continue
                newest = items[0].get("backup_id")
                if newest != self._seen:
                    self._seen = newest
                    self.rec.event("backup_seen", backup=newest, index=items[0].get("index"),
                                   stall_s=STALL_S, interval_s=INTERVAL_S)
                break

    def stop(self) -> None:
        self._halt.set()
        self.join(10)
