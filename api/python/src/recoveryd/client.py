"""The operator client: nodes, tasks, faults, recoveries, backups, cluster.

Every call returns plain dataclasses built from the engine's JSON (fields
the engine adds later land in ``extra``); errors are the exceptions of
:mod:`recoveryd.errors`. Reads and idempotent writes fail over between
replicas and are tried again; a write that is not idempotent (a recovery or
backup trigger, a consistency check, a task's cancel or retry) raises :class:`OutcomeUnknown` when its
outcome cannot be known. A task submitted without a ``task_id`` gets one
chosen here, so its submission is idempotent too.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import (Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Type, TypeVar,
                    Union, cast)

from ._http import Transport
from .config import endpoints_from_env

T = TypeVar("T")


def _make(cls: Type[T], obj: Any) -> T:
    """``cls`` from a JSON object: known fields by name, the rest in ``extra``."""
    if not isinstance(obj, dict):
        raise TypeError(f"expected a JSON object for {cls.__name__}, got {type(obj).__name__}")
    names = {f.name for f in dataclasses.fields(cast(Any, cls))}
    known = {k: v for k, v in obj.items() if k in names and k != "extra"}
    extra = {k: v for k, v in obj.items() if k not in names}
    inst = cls(**known)
    if "extra" in names:
        setattr(inst, "extra", extra)
    return inst


@dataclass
class Node:
    node_id: str
    epoch: int = 0
    state: str = ""
    capacity: Dict[str, Any] = field(default_factory=dict)
    labels: Dict[str, str] = field(default_factory=dict)
    load: Dict[str, Any] = field(default_factory=dict)
    last_heartbeat_at: Optional[str] = None
    phi: Optional[float] = None
    tasks: int = 0
    reason: str = ""
    registered_at: Optional[str] = None
    updated_at: Optional[str] = None
    health_url: str = ""
    address: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass
class CheckpointInfo:
    version: int
    updated_at: Optional[str] = None
    size: int = 0
    checksum: str = ""
    data: Any = None


@dataclass
class Task:
    task_id: str
    state: str = ""
    priority: int = 5
    critical: bool = False
    node_id: Optional[str] = None
    attempt: int = 0
    checkpoint: Optional[CheckpointInfo] = None
    created_at: Optional[str] = None
    updated_at: Optional[str] = None
    requirements: Dict[str, Any] = field(default_factory=dict)
    payload: Any = None
    max_attempts: int = 0
    failures: int = 0
    result: Any = None
    error: Optional[str] = None
    deadline: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Checkpoint:
    version: int
    data: Any = None
    checksum: str = ""
    updated_at: Optional[str] = None
    attempt: int = 0
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass
class ConflictRecord:
    """A write of a superseded attempt (availability mode) and how it was
    resolved; ``data`` holds what was written, so nothing is lost."""

    conflict_id: str
    task_id: str = ""
    attempt: int = 0
    task_attempt: int = 0
    kind: str = ""
    version: Optional[int] = None
    stored_version: Optional[int] = None
    node_id: Optional[str] = None
    task_node_id: Optional[str] = None
    resolution: str = ""
    adopted: bool = False
    reason: str = ""
    resolved_by: str = ""
    data: Any = None
    at: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Fault:
    id: str
    node_id: Optional[str] = None
    fault_type: str = ""
    severity_level: str = ""
    detected_at: Optional[str] = None
    resolved_at: Optional[str] = None
    recovery_action: Any = None
    status: str = ""
    metadata: Dict[str, Any] = field(default_factory=dict)
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass
class FaultStatus:
    active_faults: int = 0
    faults_last_hour: int = 0
    detection_latency_ms: Dict[str, Any] = field(default_factory=dict)
    recovery_success_rate: Optional[float] = None
    mode: str = ""
    partition_suspected: bool = False
    policy_version: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskRecovery:
    id: str
    original_task_id: str = ""
    failed_node_id: str = ""
    recovery_node_id: Optional[str] = None
    recovery_strategy: str = ""
    started_at: Optional[str] = None
    completed_at: Optional[str] = None
    success: bool = False
    error_message: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Recovery:
    recovery_id: str
    node_id: str = ""
    strategy: Optional[str] = None
    status: str = ""
    started_at: Optional[str] = None
    completed_at: Optional[str] = None
    tasks_total: int = 0
    tasks_recovered: int = 0
    tasks_failed: int = 0
    reason: str = ""
    items: List[TaskRecovery] = field(default_factory=list)
    estimated_time: Optional[float] = None
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Backup:
    backup_id: str
    target: str = ""
    status: str = ""
    index: Optional[int] = None
    term: Optional[int] = None
    size: Optional[int] = None
    checksum: Optional[str] = None
    digest: Optional[str] = None
    started_at: Optional[str] = None
    completed_at: Optional[str] = None
    verified_at: Optional[str] = None
    verified: Optional[bool] = None
    error: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Replica:
    id: int
    address: str = ""
    role: str = ""
    voter_role: Optional[str] = None
    reachable: bool = False
    applied_index: Optional[int] = None
    api_url: Optional[str] = None
    self: bool = False
    extra: Dict[str, Any] = field(default_factory=dict)


@dataclass
class ClusterHealth:
    overall_health: str = ""
    healthy_nodes: int = 0
    failed_nodes: int = 0
    suspect_nodes: int = 0
    isolated_nodes: int = 0
    total_nodes: int = 0
    has_quorum: bool = False
    leader: Optional[int] = None
    replicas: List[Replica] = field(default_factory=list)
    last_updated: Optional[str] = None
    extra: Dict[str, Any] = field(default_factory=dict)


def _q(segment: str) -> str:
    """One path segment, percent-encoded (an id never reaches another route)."""
    return urllib.parse.quote(str(segment), safe="")


def _task(obj: Any) -> Task:
    t = _make(Task, obj)
    if isinstance(t.checkpoint, dict):
        t.checkpoint = _make(CheckpointInfo, t.checkpoint)
    return t


def _recovery(obj: Any) -> Recovery:
    r = _make(Recovery, obj)
    r.items = [_make(TaskRecovery, i) for i in (r.items or [])]
    return r


class Client:
    """An operator's view of the engine (thread-safe).

    ``endpoints`` default to ``RECOVERYD_ENDPOINTS``, ``token`` to
    ``RECOVERYD_TOKEN``, ``cafile`` to ``RECOVERYD_CACERT``. ``timeout``
    bounds one try; ``retry_for`` the retries of one call.
    """

    def __init__(
        self,
        endpoints: Optional[Sequence[str]] = None,
        *,
        token: Optional[str] = None,
        cafile: Optional[str] = None,
        certfile: Optional[str] = None,
        keyfile: Optional[str] = None,
        timeout: float = 5.0,
        retry_for: float = 15.0,
    ) -> None:
        self._http = Transport(
            endpoints if endpoints is not None else endpoints_from_env(),
            token=token if token is not None else os.environ.get("RECOVERYD_TOKEN") or None,
            cafile=cafile if cafile is not None else os.environ.get("RECOVERYD_CACERT") or None,
            certfile=certfile,
            keyfile=keyfile,
            timeout=timeout,
            retry_for=retry_for,
        )

    # ---- plumbing ---------------------------------------------------------

    def _get(self, path: str, **query: Any) -> Any:
        return self._http.request("GET", path, query=query or None, idempotent=True).body

    def _write(self, method: str, path: str, body: Any = None, *, idempotent: bool) -> Any:
        return self._http.request(method, path, body, idempotent=idempotent).body

    def _pages(self, path: str, **query: Any) -> Iterator[Any]:
        cursor: Optional[str] = None
        while True:
            page = self._get(path, limit=1000, cursor=cursor, **query)
            yield from page.get("items", [])
            cursor = page.get("next_cursor")
            if not cursor:
                return

    # ---- nodes ------------------------------------------------------------

    def nodes(self, state: Optional[str] = None) -> List[Node]:
        return [_make(Node, n) for n in self._pages("/api/v1/nodes", state=state)]

    def node(self, node_id: str) -> Node:
        return _make(Node, self._get(f"/api/v1/nodes/{_q(node_id)}"))

    def drain(self, node_id: str, reason: Optional[str] = None) -> Node:
        return _make(Node, self._write("POST", f"/api/v1/nodes/{_q(node_id)}/drain",
                                       {"reason": reason}, idempotent=True))

    def isolate(self, node_id: str, reason: Optional[str] = None) -> Node:
        return _make(Node, self._write("POST", f"/api/v1/nodes/{_q(node_id)}/isolate",
                                       {"reason": reason}, idempotent=True))

    def readmit(self, node_id: str, reason: Optional[str] = None) -> Node:
        return _make(Node, self._write("POST", f"/api/v1/nodes/{_q(node_id)}/readmit",
                                       {"reason": reason}, idempotent=True))

    def remove(self, node_id: str) -> Node:
        """Graceful leave: the node's tasks are reassigned at once."""
        return _make(Node, self._write("DELETE", f"/api/v1/nodes/{_q(node_id)}", idempotent=True))

    # ---- tasks ------------------------------------------------------------

    def submit(
        self,
        payload: Any = None,
        *,
        task_id: Optional[str] = None,
        priority: int = 5,
        critical: bool = False,
        slots: int = 1,
        labels: Optional[Mapping[str, str]] = None,
        max_attempts: int = 5,
        deadline: Union[None, str, datetime.datetime] = None,
    ) -> Task:
        """Submits a task (idempotent: the id is chosen here when not given).

        ``deadline``: an RFC 3339 time, or an aware datetime; a task not
        finished by then fails with a fault and is revoked from its agent.
        """
        body: Dict[str, Any] = {
            "task_id": task_id or str(uuid.uuid4()),
            "priority": priority,
            "critical": critical,
            "payload": {} if payload is None else payload,
            "requirements": {"slots": slots, "labels": dict(labels or {})},
            "max_attempts": max_attempts,
        }
        if isinstance(deadline, datetime.datetime):
            if deadline.tzinfo is None:
                raise ValueError("deadline: a datetime with a time zone (UTC), not a naive one")
            utc = deadline.astimezone(datetime.timezone.utc)
            body["deadline"] = utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
        elif deadline is not None:
            body["deadline"] = deadline
        return _task(self._write("POST", "/api/v1/tasks", body, idempotent=True))

    def tasks(self, state: Optional[str] = None, node_id: Optional[str] = None,
              priority: Optional[int] = None,
              label: Optional[Tuple[str, str]] = None) -> List[Task]:
        """Every task, filtered (the filters combine): by state, by the
        node it is placed on, by priority, by one (key, value) label of its
        requirements."""
        return [_task(t) for t in self._pages(
            "/api/v1/tasks", state=state, node_id=node_id, priority=priority,
            label=f"{label[0]}={label[1]}" if label is not None else None)]

    def cancel(self, task_id: str, reason: Optional[str] = None) -> Task:
        """Cancels a task that has not finished (operator): it is revoked
        from its agent, whose attempt is fenced. A finished task raises
        Conflict."""
        return _task(self._write("POST", f"/api/v1/tasks/{_q(task_id)}/cancel",
                                 {"reason": reason}, idempotent=False))

    def retry(self, task_id: str) -> Task:
        """Re-queues a failed or quarantined (poison) task (operator): a new
        attempt with a fresh max_attempts budget and poison window, resuming
        from its newest checkpoint. Any other state raises Conflict."""
        return _task(self._write("POST", f"/api/v1/tasks/{_q(task_id)}/retry", None,
                                 idempotent=False))

    def task(self, task_id: str) -> Task:
        return _task(self._get(f"/api/v1/tasks/{_q(task_id)}"))

    def checkpoint(self, task_id: str) -> Checkpoint:
        return _make(Checkpoint, self._get(f"/api/v1/tasks/{_q(task_id)}/checkpoint"))

    def wait_task(self, task_id: str, states: Sequence[str] = ("completed", "failed", "cancelled"),
                  timeout: float = 60.0, interval: float = 0.1) -> Task:
        """Polls the task until its state is one of ``states``."""
        end = time.monotonic() + timeout
        while True:
            t = self.task(task_id)
            if t.state in states:
                return t
            if time.monotonic() >= end:
                raise TimeoutError(f"task {task_id} still {t.state} after {timeout} s")
            time.sleep(interval)

    def conflicts(self, task_id: Optional[str] = None, resolution: Optional[str] = None,
                  since: Optional[str] = None) -> List[ConflictRecord]:
        """Conflict records (availability mode), oldest first, filtered by
        task, by resolution (keep_newer, keep_progress, fail_task) and by
        time (``since``: RFC 3339)."""
        return [_make(ConflictRecord, c) for c in self._pages(
            "/api/v1/conflicts", task_id=task_id, resolution=resolution, since=since)]

    def conflict(self, conflict_id: str) -> ConflictRecord:
        return _make(ConflictRecord, self._get(f"/api/v1/conflicts/{_q(conflict_id)}"))

    # ---- faults and recoveries ----------------------------------------------

    def fault_status(self) -> FaultStatus:
        return _make(FaultStatus, self._get("/api/v1/faults/status"))

    def faults(self, node_id: Optional[str] = None, status: Optional[str] = None,
               severity_level: Optional[str] = None, since: Optional[str] = None) -> List[Fault]:
        return [_make(Fault, f) for f in self._pages(
            "/api/v1/faults/records", node_id=node_id, status=status,
            severity_level=severity_level, since=since)]

    def fault(self, fault_id: str) -> Fault:
        return _make(Fault, self._get(f"/api/v1/faults/records/{_q(fault_id)}"))

    def trigger_recovery(self, node_id: str, strategy: str = "fast_recovery") -> Recovery:
        """Starts a recovery run (not idempotent: OutcomeUnknown when unsure)."""
        b = self._write("POST", "/api/v1/recovery/trigger",
                        {"node_id": node_id, "strategy": strategy}, idempotent=False)
        return _recovery({"node_id": node_id, "strategy": strategy, **b})

    def recoveries(self) -> List[Recovery]:
        return [_recovery(r) for r in self._pages("/api/v1/recovery/tasks")]

    def recovery(self, recovery_id: str) -> Recovery:
        return _recovery(self._get(f"/api/v1/recovery/tasks/{_q(recovery_id)}"))

    # ---- backups ----------------------------------------------------------

    def trigger_backup(self, target: Optional[str] = None) -> Backup:
        """Starts a backup (not idempotent: OutcomeUnknown when unsure)."""
        b = self._write("POST", "/api/v1/backup/trigger",
                        {"target": target} if target else {}, idempotent=False)
        return _make(Backup, b)

    def backups(self) -> List[Backup]:
        return [_make(Backup, b) for b in self._pages("/api/v1/backups")]

    def backup(self, backup_id: str) -> Backup:
        return _make(Backup, self._get(f"/api/v1/backups/{_q(backup_id)}"))

    def verify_backup(self, backup_id: str) -> Backup:
        return _make(Backup, self._write("POST", f"/api/v1/backups/{_q(backup_id)}/verify",
                                         {}, idempotent=True))

    # ---- cluster ----------------------------------------------------------

    def cluster_health(self) -> ClusterHealth:
        b = dict(self._get("/api/v1/health/cluster"))
        q = b.pop("quorum", None) or {}
        h = _make(ClusterHealth, b)
        h.has_quorum = bool(q.get("has_quorum"))
        h.leader = q.get("leader")
        h.replicas = [_make(Replica, r) for r in q.get("replicas", [])]
        return h

    def replicas(self) -> List[Replica]:
        return [_make(Replica, r) for r in self._get("/api/v1/cluster/replicas")["replicas"]]
