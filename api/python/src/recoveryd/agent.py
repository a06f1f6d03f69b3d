"""The agent SDK: run tasks the engine assigns, with checkpoints and a lease.

An agent author writes a handler::

    from recoveryd.agent import Agent

    agent = Agent("worker-1", capacity=4, labels={"gpu": "a100"})

    @agent.handler
    def run(ctx):
        step = ctx.checkpoint_data["step"] if ctx.checkpoint_data else 0
        while step < ctx.payload["steps"]:
            do_step(step)
            step += 1
            ctx.checkpoint({"step": step})  # raises Fenced/Revoked once stopped
        return {"steps": step}              # completes the task

    agent.run_forever()

The SDK registers, heartbeats in a background thread (with the metrics the
detectors read), starts one thread per assigned task, numbers checkpoint
versions, completes or fails each task with its attempt as the fencing token,
and stops a task (the handler sees :class:`Fenced` or :class:`Revoked` at its
next checkpoint, and ``ctx.cancelled`` turns true) when its lease was not
renewed within ``lease_ms``, when the engine answers ``fenced``, or when a
revocation names the attempt it runs. A stopped attempt is never written
with again.

When the engine runs in availability mode (``partition_mode`` in its
registration and heartbeat answers), a lost lease stops nothing: writes
that cannot reach the engine wait in a buffer (on disk in ``buffer_dir``)
and are replayed in order once it answers again; a replayed write of an
attempt the engine superseded meanwhile comes back as a conflict record
(event ``conflict``) and stops that attempt.
"""

from __future__ import annotations

import logging
import os
import random
import re
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Sequence, Set, Tuple

from ._buffer import Entry, WriteBuffer
from ._http import Transport
from .config import endpoints_from_env
from .errors import (
    ApiError,
    BufferFull,
    Conflict,
    ConnectionFailed,
    Fenced,
    NotFound,
    OutcomeUnknown,
    RecoverydError,
    Revoked,
    TaskFailed,
    TaskStopped,
)

log = logging.getLogger("recoveryd.agent")

Handler = Callable[["TaskContext"], Any]
_NODE_ID = re.compile(r"[A-Za-z0-9._:-]{1,255}")
CONSISTENCY, AVAILABILITY = "consistency", "availability"
DEFAULT_BUFFER_MAX_BYTES = 64 << 20


def _unreachable(e: RecoverydError) -> bool:
    """The write did not reach a majority (or may not have): no replica
    answered, 503 after every retry, an unknown outcome, a 5xx of a proxy."""
    if isinstance(e, (ConnectionFailed, OutcomeUnknown)):
        return True
    return isinstance(e, ApiError) and e.status >= 500


def _json_copy(v: Any) -> Any:
    """``v`` as the engine will hand it back (a JSON round trip)."""
    import json

    return json.loads(json.dumps(v))


class TaskContext:
    """One attempt of one task, handed to the handler."""

    def __init__(self, agent: "Agent", task: Mapping[str, Any]) -> None:
        self._agent = agent
        self.task: Dict[str, Any] = dict(task)
        self.task_id: str = str(task["task_id"])
        self.attempt: int = int(task["attempt"])
        self.payload: Any = task.get("payload")
        ckpt = task.get("checkpoint")
        self.checkpoint_version: int = 0
        self.checkpoint_data: Any = None
        if isinstance(ckpt, dict):
            self.checkpoint_version = int(ckpt.get("version", 0))
            self.checkpoint_data = ckpt.get("data")
        self.resumed_from: Optional[int] = self.checkpoint_version or None
        req = task.get("requirements")
        self.slots: int = int(req.get("slots", 1)) if isinstance(req, dict) else 1
        self._stop: Optional[TaskStopped] = None
        self._stopped = threading.Event()
        self._lock = threading.Lock()  # one checkpoint write at a time

    # ---- cancellation -----------------------------------------------------

    @property
    def cancelled(self) -> bool:
        """True once this attempt is stopped (lease lost, fenced, revoked)."""
        if not self._stopped.is_set():
            self._agent._check_lease()
        return self._stopped.is_set()

    @property
    def stop_reason(self) -> Optional[TaskStopped]:
        return self._stop if self.cancelled else None

    def raise_if_cancelled(self) -> None:
        """Raises :class:`Fenced` or :class:`Revoked` once stopped."""
        if self.cancelled and self._stop is not None:
            raise self._stop

    def wait(self, seconds: float) -> bool:
        """Sleeps up to ``seconds``; returns True at once when stopped."""
        end = time.monotonic() + seconds
        while not self.cancelled:
            now = time.monotonic()
            if now >= end:
                return False
            step = end - now
            lease_end = self._agent._lease_deadline
            if lease_end:
                step = min(step, max(0.001, lease_end - now))
            self._stopped.wait(step)
        return True

    def _halt(self, why: TaskStopped) -> bool:
        """Stops the attempt; False when it was stopped already."""
        if self._stopped.is_set():
            return False
        self._stop = why
        self._stopped.set()
        return True

    # ---- writes -----------------------------------------------------------

    def checkpoint(self, data: Any) -> int:
        """Stores ``data`` (any JSON) as the next checkpoint version.

        Returns the version once the engine committed it (in availability
        mode: or once it is buffered, when the engine cannot be reached).
        Raises :class:`Fenced` or :class:`Revoked` when the attempt was
        stopped (nothing is written then), :class:`BufferFull` when it had to
        be buffered and the buffer has no room, and :class:`RecoverydError`
        when the engine could not be reached in time (consistency mode).
        """
        with self._lock:
            self.raise_if_cancelled()
            version = self.checkpoint_version + 1
            self._agent._put_checkpoint(self, version, data)
            self.checkpoint_version = version
            self.checkpoint_data = data
            self._agent._add_progress(1.0)
            return version

    def progress(self, amount: float = 1.0) -> None:
        """Reports progress without a checkpoint (the stall detector reads it).

        Raises :class:`TaskStopped` once the attempt was stopped.
        """
        self.raise_if_cancelled()
        self._agent._add_progress(amount)


class _Metrics:
    """What the heartbeat reports: latency and errors of the agent's engine
    calls and task runs over a sliding window, CPU share, memory share and a
    progress counter."""

    WINDOW = 50

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: Deque[float] = deque(maxlen=self.WINDOW)
        self.outcomes: Deque[bool] = deque(maxlen=self.WINDOW)  # True = error
        self.progress = 0.0
        self._cpu_at = (time.monotonic(), sum(os.times()[:2]))
        self._cpu: Optional[float] = None

    def call(self, seconds: float, error: bool) -> None:
        with self.lock:
            self.latencies.append(seconds * 1000.0)
            self.outcomes.append(error)

    def snapshot(self) -> Dict[str, float]:
        with self.lock:
            m: Dict[str, float] = {"progress": self.progress}
            if self.latencies:
                m["latency_ms"] = round(sum(self.latencies) / len(self.latencies), 3)
            if self.outcomes:
                m["error_rate"] = round(sum(self.outcomes) / len(self.outcomes), 4)
        # CPU share over at least 50 ms (heartbeats may come faster).
        now, cpu = time.monotonic(), sum(os.times()[:2])
        then, cpu0 = self._cpu_at
        if now - then >= 0.05:
            self._cpu = round(max(0.0, (cpu - cpu0) / (now - then)), 4)
            self._cpu_at = (now, cpu)
        if self._cpu is not None:
            m["cpu"] = self._cpu
        mem = _mem_share()
        if mem is not None:
            m["mem"] = mem
        return m


def _mem_share() -> Optional[float]:
    """Resident memory over physical memory (Linux), else None."""
    try:
        with open("/proc/self/statm") as f:
            rss_pages = int(f.read().split()[1])
        total = os.sysconf("SC_PHYS_PAGES")
        return round(rss_pages / total, 6) if total > 0 else None
    except (OSError, ValueError, IndexError):
        return None


class _Run:
    def __init__(self, ctx: TaskContext, thread: threading.Thread) -> None:
        self.ctx = ctx
        self.thread = thread


class Agent:
    """An agent process: registration, heartbeats, task threads.

    ``endpoints``: base URLs of the engine replicas (default
    ``RECOVERYD_ENDPOINTS``); ``token`` (default ``RECOVERYD_TOKEN``) is
    sent as ``Authorization: Bearer``; ``cafile`` (default
    ``RECOVERYD_CACERT``) verifies https:// replicas. ``request_timeout``
    bounds one try of one request (default: a third of ``lease_ms``).
    ``metrics`` may return extra heartbeat metrics (``cpu``, ``mem``,
    ``latency_ms``, ``error_rate``) that replace the measured ones.
    ``report_progress=False`` leaves ``progress`` out of heartbeats, and with
    it the engine's stall detection (tasks in hand and no progress for
    ``stall_samples`` heartbeats): for handlers that work longer than that
    between checkpoints and cannot call ``ctx.progress()``.
    ``buffer_dir``: where writes wait while the engine (in availability
    mode) cannot be reached, at most ``buffer_max_bytes``; one file per
    node id, replayed at the next start. Without it the buffer is in
    memory only (a warning says so when the engine is in that mode).
    """

    def __init__(
        self,
        node_id: str,
        endpoints: Optional[Sequence[str]] = None,
        *,
        capacity: int = 1,
        labels: Optional[Mapping[str, str]] = None,
        handler: Optional[Handler] = None,
        token: Optional[str] = None,
        cafile: Optional[str] = None,
        certfile: Optional[str] = None,
        keyfile: Optional[str] = None,
        health_url: Optional[str] = None,
        address: Optional[str] = None,
        request_timeout: Optional[float] = None,
        metrics: Optional[Callable[[], Mapping[str, float]]] = None,
        report_progress: bool = True,
        buffer_dir: Optional[str] = None,
        buffer_max_bytes: int = DEFAULT_BUFFER_MAX_BYTES,
    ) -> None:
        if not _NODE_ID.fullmatch(node_id):
            raise ValueError(f"node_id {node_id!r} must be 1-255 characters of [A-Za-z0-9._:-]")
        if not 1 <= capacity <= 65536:
            raise ValueError(f"capacity must be from 1 to 65536 slots, not {capacity}")
        self.node_id = node_id
        self.capacity = capacity
        self.labels = dict(labels or {})
        self.health_url = health_url
        self.address = address
        self._handler = handler
        self._user_metrics = metrics
        self._report_progress = report_progress
        self._fixed_timeout = request_timeout
        self._http = Transport(
            endpoints if endpoints is not None else endpoints_from_env(),
            token=token if token is not None else os.environ.get("RECOVERYD_TOKEN") or None,
            cafile=cafile if cafile is not None else os.environ.get("RECOVERYD_CACERT") or None,
            certfile=certfile,
            keyfile=keyfile,
            timeout=request_timeout or 1.0,
        )
        self._lock = threading.Lock()
        self._runs: Dict[str, _Run] = {}
        # Attempts that ran here and ended (finished or stopped): never again.
        self._ended: Dict[Tuple[str, int], None] = {}
        self._metrics = _Metrics()
        self._closing = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.epoch: Optional[int] = None
        self.state: Optional[str] = None
        self.heartbeat_interval = 0.5
        self.lease = 1.5
        self._lease_deadline = 0.0  # monotonic; 0 = no lease held
        self._need_register = True
        self._listeners: List[Callable[[str, Dict[str, Any]], None]] = []
        self.partition_mode = CONSISTENCY  # until the engine says otherwise
        self.buffer_dir = buffer_dir
        path = os.path.join(buffer_dir, f"recoveryd-{node_id}.jsonl") if buffer_dir else None
        self._buffer = WriteBuffer(path, buffer_max_bytes)
        self._replay_wake = threading.Event()
        self._replay_stop = threading.Event()
        # Superseded attempts whose newest write went ahead of the others,
        # and the buffered writes already answered that way (their turn in
        # the buffer only takes them out).
        self._hurried: Set[Tuple[str, int]] = set()
        self._answered_early: Set[int] = set()
        self._replayer: Optional[threading.Thread] = None

    # ---- public -----------------------------------------------------------

    def handler(self, fn: Handler) -> Handler:
        """Decorator: the function run for every task assigned here."""
        self._handler = fn
        return fn

    def on_event(self, fn: Callable[[str, Dict[str, Any]], None]) -> None:
        """Calls ``fn(kind, fields)`` on: registered, started, stopped,
        completed, failed, refused, lease_lost, partition_mode, and for the
        buffer (availability mode): buffered, replayed, conflict, dropped,
        buffer_full (from the SDK's threads)."""
        self._listeners.append(fn)

    def start(self) -> "Agent":
        """Starts the heartbeat thread (registration happens there)."""
        if self._handler is None:
            raise ValueError("no handler: pass handler= or decorate one with @agent.handler")
        if self._thread is None:
            self._closing.clear()
            self._thread = threading.Thread(
                target=self._loop, name=f"recoveryd-heartbeat-{self.node_id}", daemon=True
            )
            self._thread.start()
        self._buffer.reopen()  # started again after stop()
        if self._replayer is None:
            self._replay_stop.clear()
            self._replayer = threading.Thread(
                target=self._replay_loop, name=f"recoveryd-replay-{self.node_id}", daemon=True
            )
            self._replayer.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stops heartbeats and waits up to ``timeout`` for task threads.

        Running tasks are not completed: their attempts are stopped and the
        engine moves them once the lease runs out. Buffered writes get what
        is left of ``timeout`` to be replayed; those left stay in
        ``buffer_dir`` for the next start (in memory: lost, with a warning).
        """
        end = time.monotonic() + timeout
        self._closing.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._fence_all(Fenced, "agent stopping")
        for run in self._running():
            run.thread.join(max(0.0, end - time.monotonic()))
        if self._replayer is not None:
            while len(self._buffer) and time.monotonic() < end:
                self._replay_wake.set()
                time.sleep(0.01)
            self._replay_stop.set()
            self._replay_wake.set()
            self._replayer.join(max(0.1, end - time.monotonic()))
            self._replayer = None
        self._buffer.close()
        left = len(self._buffer)
        if left:
            where = f"kept in {self.buffer_dir}" if self.buffer_dir else "lost (no buffer_dir)"
            log.warning("recoveryd: %s: %d buffered write(s) not replayed: %s", self.node_id,
                        left, where)

    def run_forever(self) -> None:
        """start(), then blocks until KeyboardInterrupt; stop() on the way out."""
        self.start()
        try:
            while not self._closing.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def __enter__(self) -> "Agent":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def registered(self) -> bool:
        return self.epoch is not None and not self._need_register

    def running_tasks(self) -> Dict[str, int]:
        """task_id -> attempt of the attempts running now."""
        return {tid: r.ctx.attempt for tid, r in self._running_items()}

    @property
    def buffered(self) -> int:
        """Writes waiting in the buffer to be replayed."""
        return len(self._buffer)

    @property
    def available(self) -> bool:
        """True while the engine runs in availability mode."""
        return self.partition_mode == AVAILABILITY

    @property
    def lease_remaining(self) -> float:
        """Seconds left on the lease (0 when none is held)."""
        return max(0.0, self._lease_deadline - time.monotonic())

    # ---- internals: bookkeeping ---------------------------------------------

    def _emit(self, event: str, **fields: Any) -> None:
        for fn in self._listeners:
            try:
                fn(event, dict(fields, node_id=self.node_id))
            except Exception:  # a listener's bug must not stop the SDK
                log.exception("recoveryd: event listener failed")

    def _running(self) -> List[_Run]:
        with self._lock:
            return list(self._runs.values())

    def _running_items(self) -> List[Tuple[str, _Run]]:
        with self._lock:
            return list(self._runs.items())

    def _add_progress(self, amount: float) -> None:
        with self._metrics.lock:
            self._metrics.progress += amount

    def _request_timeout(self) -> float:
        return self._fixed_timeout or max(0.05, self.lease / 3.0)

    def _halt(self, ctx: TaskContext, why: TaskStopped) -> None:
        if ctx._halt(why):
            with self._lock:
                self._ended[(ctx.task_id, ctx.attempt)] = None
                while len(self._ended) > 10000:
                    self._ended.pop(next(iter(self._ended)))
            log.warning("recoveryd: %s", why)
            self._emit("stopped", task_id=ctx.task_id, attempt=ctx.attempt, reason=why.reason,
                       error=type(why).__name__)

    def _fence_all(self, cls: type, reason: str) -> int:
        n = 0
        for run in self._running():
            if not run.ctx._stopped.is_set():
                self._halt(run.ctx, cls(run.ctx.task_id, run.ctx.attempt, reason))
                n += 1
        return n

    def _check_lease(self) -> None:
        """Stops every attempt once the lease ran out (cheap; any thread)."""
        if self._lease_deadline and time.monotonic() >= self._lease_deadline:
            available = self.available
            with self._lock:
                if not self._lease_deadline:
                    return
                self._lease_deadline = 0.0
                # The engine may have moved our tasks: come back with a new
                # epoch, which fences the old one.
                self._need_register = not available
            if available:
                # Tasks go on; what they write waits in the buffer.
                log.warning("recoveryd: %s: lease lost, tasks keep running (availability mode)",
                            self.node_id)
                self._emit("lease_lost", stopped=0)
                return
            n = self._fence_all(Fenced, f"lease of {self.lease * 1000:.0f} ms not renewed")
            log.warning("recoveryd: %s: lease lost, %d task(s) stopped", self.node_id, n)
            self._emit("lease_lost", stopped=n)

    # ---- internals: the heartbeat thread ------------------------------------

    def _loop(self) -> None:
        while not self._closing.is_set():
            try:
                self._loop_once()
            except Exception:  # the heartbeat thread must outlive any bug
                log.exception("recoveryd: %s: heartbeat loop", self.node_id)
                self._closing.wait(self.heartbeat_interval)

    def _loop_once(self) -> None:
        backoff = 0.1
        while not self._closing.is_set():
            if self._need_register:
                if self._register():
                    backoff = 0.1
                else:
                    self._closing.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
            t0 = time.monotonic()
            self._heartbeat(t0)
            self._check_lease()
            self._closing.wait(max(0.0, t0 + self.heartbeat_interval - time.monotonic()))

    def _register(self) -> bool:
        if not self.available:  # availability: the engine's answers stop what moved
            self._fence_all(Fenced, "registering again (new epoch)")
        body: Dict[str, Any] = {
            "node_id": self.node_id,
            "capacity": {"slots": self.capacity},
            "labels": self.labels,
        }
        if self.health_url:
            body["health_url"] = self.health_url
        if self.address:
            body["address"] = self.address
        t0 = time.monotonic()
        try:
            # A repeat only bumps the epoch again: we use the newest answer.
            r = self._http.request(
                "POST", "/api/v1/nodes", body, idempotent=True,
                timeout=self._request_timeout(), deadline=t0 + 5.0,
            )
        except RecoverydError as e:
            log.warning("recoveryd: %s: registration failed: %s", self.node_id, e)
            return False
        b = r.body
        self.epoch = int(b["epoch"])
        self.heartbeat_interval = max(0.01, int(b["heartbeat_interval_ms"]) / 1000.0)
        self.lease = max(0.03, int(b["lease_ms"]) / 1000.0)
        self._set_mode(b)
        with self._lock:
            self._lease_deadline = t0 + self.lease
            self._need_register = False
        log.info("recoveryd: %s registered, epoch %d, lease %.0f ms", self.node_id, self.epoch,
                 self.lease * 1000)
        self._emit("registered", epoch=self.epoch)
        return True

    def _heartbeat(self, t0: float) -> None:
        used = sum(r.ctx.slots for r in self._running() if not r.ctx._stopped.is_set())
        metrics = self._metrics.snapshot()
        if not self._report_progress:
            del metrics["progress"]
        if self._user_metrics is not None:
            try:
                metrics.update(self._user_metrics())
            except Exception:
                log.exception("recoveryd: metrics callback failed")
        body = {"epoch": self.epoch, "load": {"slots_used": used}, "metrics": metrics}
        timeout = self._request_timeout()
        try:
            r = self._http.request(
                "POST", f"/api/v1/nodes/{self.node_id}/heartbeat", body, idempotent=True,
                timeout=timeout,
                deadline=t0 + min(self.lease, max(self.heartbeat_interval, 2 * timeout)),
            )
        except Conflict as e:  # fenced: the epoch is over (failed, isolated, re-registered)
            log.warning("recoveryd: %s: heartbeat fenced: %s", self.node_id, e.message)
            if not self.available:
                self._fence_all(Fenced, f"engine fenced epoch {self.epoch}: {e.message}")
            self._need_register = True
            self._replay_wake.set()
            return
        except NotFound:
            if not self.available:
                self._fence_all(Fenced, "node unknown to the engine")
            self._need_register = True
            self._replay_wake.set()
            return
        except RecoverydError as e:
            log.info("recoveryd: %s: heartbeat failed: %s", self.node_id, e)
            return
        b = r.body if isinstance(r.body, dict) else {}
        lease_ms = b.get("lease_ms")
        if isinstance(lease_ms, int) and lease_ms > 0:
            self.lease = lease_ms / 1000.0
        self.state = b.get("state")
        self._set_mode(b)
        if len(self._buffer):
            self._replay_wake.set()  # the engine answers again
        with self._lock:
            if self._need_register:
                return  # the lease ran out meanwhile: register again first
            # Renewed from when the heartbeat was sent, not answered.
            self._lease_deadline = t0 + self.lease
        self._apply(b)

    def _apply(self, b: Mapping[str, Any]) -> None:
        assignments = [a for a in b.get("assignments") or [] if isinstance(a, dict)]
        assigned = {str(a.get("task_id")): a for a in assignments}
        revs: List[Tuple[str, Optional[int]]] = []
        if isinstance(b.get("revocations"), list):
            for rv in b["revocations"]:
                if isinstance(rv, dict) and "task_id" in rv:
                    att = rv.get("attempt")
                    revs.append((str(rv["task_id"]), int(att) if isinstance(att, int) else None))
        else:
            revs = [(str(t), None) for t in b.get("revoked") or []]
        with self._lock:
            runs = dict(self._runs)
        for tid, att in revs:
            run = runs.get(tid)
            if run is None:
                continue
            if att is None:
                # `revoked` names no attempt: when the same answer assigns
                # the attempt we run, the revocation was of an older one.
                a = assigned.get(tid)
                if a is not None and a.get("attempt") == run.ctx.attempt:
                    continue
            elif att != run.ctx.attempt:
                continue
            self._halt(run.ctx, Revoked(tid, run.ctx.attempt, "revoked by the engine"))
        for a in assignments:
            tid, att = str(a.get("task_id")), a.get("attempt")
            if not isinstance(att, int):
                continue
            run = runs.get(tid)
            if run is not None and run.ctx.attempt >= att:
                continue  # sent again until its first checkpoint
            if (tid, att) in self._ended:
                continue
            if run is not None:
                self._halt(run.ctx, Fenced(tid, run.ctx.attempt, f"attempt {att} assigned since"))
            self._start_task(a)

    # ---- internals: task threads --------------------------------------------

    def _start_task(self, task: Mapping[str, Any]) -> None:
        ctx = TaskContext(self, task)
        t = threading.Thread(target=self._run_task, args=(ctx,),
                             name=f"recoveryd-task-{ctx.task_id[:8]}", daemon=True)
        with self._lock:
            self._runs[ctx.task_id] = _Run(ctx, t)
        origin = f" from checkpoint {ctx.checkpoint_version}" if ctx.resumed_from else ""
        log.info("recoveryd: %s: task %s attempt %d started%s", self.node_id, ctx.task_id,
                 ctx.attempt, origin)
        self._emit("started", task_id=ctx.task_id, attempt=ctx.attempt,
                   checkpoint_version=ctx.checkpoint_version)
        t.start()

    def _run_task(self, ctx: TaskContext) -> None:
        assert self._handler is not None
        try:
            try:
                result = self._handler(ctx)
            except TaskStopped:
                return
            except TaskFailed as e:
                self._metrics.call(0.0, True)
                self._finish(ctx, "fail", {"attempt": ctx.attempt, "error": str(e)[:4096],
                                           "retryable": e.retryable})
            except Exception as e:
                log.exception("recoveryd: task %s attempt %d: handler raised", ctx.task_id,
                              ctx.attempt)
                self._metrics.call(0.0, True)
                self._finish(ctx, "fail", {"attempt": ctx.attempt,
                                           "error": f"{type(e).__name__}: {e}"[:4096],
                                           "retryable": True})
            else:
                self._finish(ctx, "complete", {"attempt": ctx.attempt,
                                               "result": {} if result is None else result})
        finally:
            with self._lock:
                run = self._runs.get(ctx.task_id)
                if run is not None and run.ctx is ctx:
                    del self._runs[ctx.task_id]
                self._ended[(ctx.task_id, ctx.attempt)] = None

    def _write(self, ctx: TaskContext, kind: str, body: Dict[str, Any]) -> Any:
        """One idempotent write with ctx's attempt, never after the lease
        (availability mode: for up to a lease).

        Raises TaskStopped when the attempt is (or turns out) stopped: the
        engine answered fenced, or (availability mode) a conflict record.
        """
        ctx.raise_if_cancelled()
        t0 = time.monotonic()
        deadline = t0 + self.lease if self.available else self._lease_deadline or t0
        method, path = _route(ctx.task_id, kind)
        try:
            r = self._http.request(method, path, body, idempotent=True,
                                   timeout=self._request_timeout(), deadline=deadline)
        except Conflict as e:
            # A conflict record is the engine's answer to a superseded
            # attempt, not a fault of this agent (see _replay).
            self._metrics.call(time.monotonic() - t0, e.record_id is None)
            if e.code == "fenced":
                self._halt(ctx, Fenced(ctx.task_id, ctx.attempt, f"engine answered: {e.message}"))
            elif e.record_id is not None:
                self._conflicted(ctx.task_id, ctx.attempt, kind, body.get("version"), e)
            ctx.raise_if_cancelled()
            raise
        except RecoverydError:
            self._metrics.call(time.monotonic() - t0, True)
            ctx.raise_if_cancelled()  # the lease ran out while we tried
            raise
        self._metrics.call(time.monotonic() - t0, False)
        return r.body

    def _put_checkpoint(self, ctx: TaskContext, version: int, data: Any) -> None:
        body = {"attempt": ctx.attempt, "version": version, "data": data,
                "node_id": self.node_id}
        if self.available and self._buffer.has_task(ctx.task_id):
            self._buffer_write(ctx, "checkpoint", body)  # behind the task's buffered writes
            return
        try:
            self._write(ctx, "checkpoint", body)
        except Conflict as e:
            # A retry of a write that landed: the engine before idempotent
            # checkpoints answers stale_version; what it stores decides.
            if e.code == "stale_version" and self._stored_is(ctx, version, data):
                return
            raise
        except RecoverydError as e:
            if not (self.available and _unreachable(e)):
                raise
            self._buffer_write(ctx, "checkpoint", body)

    def _stored_is(self, ctx: TaskContext, version: int, data: Any) -> bool:
        try:
            r = self._http.request("GET", f"/api/v1/tasks/{ctx.task_id}/checkpoint",
                                   idempotent=True, timeout=self._request_timeout(),
                                   deadline=self._lease_deadline or time.monotonic())
        except RecoverydError:
            return False
        b = r.body if isinstance(r.body, dict) else {}
        return (b.get("version") == version and b.get("attempt") == ctx.attempt
                and b.get("data") == _json_copy(data))

    def _finish(self, ctx: TaskContext, what: str, body: Dict[str, Any]) -> None:
        if ctx.cancelled:
            return
        body["node_id"] = self.node_id  # the writer, for a conflict record
        try:
            if self.available and self._buffer.has_task(ctx.task_id):
                self._buffer_write(ctx, what, body)
                return
            try:
                self._write(ctx, what, body)
            except RecoverydError as e:
                if not (self.available and _unreachable(e)):
                    raise
                self._buffer_write(ctx, what, body)
                return
        except TaskStopped:
            return
        except BufferFull as e:
            log.error("recoveryd: task %s attempt %d: %s lost: %s", ctx.task_id, ctx.attempt,
                      what, e)
            self._emit("buffer_full", task_id=ctx.task_id, attempt=ctx.attempt, what=what)
            return
        except ApiError as e:
            # conflict: the task ended otherwise (cancelled, or our own
            # earlier try of this very call landed).
            log.warning("recoveryd: task %s attempt %d: %s refused: %s", ctx.task_id,
                        ctx.attempt, what, e)
            self._emit("refused", task_id=ctx.task_id, attempt=ctx.attempt, what=what,
                       code=e.code)
            return
        except RecoverydError as e:
            log.error("recoveryd: task %s attempt %d: %s not reported: %s", ctx.task_id,
                      ctx.attempt, what, e)
            return
        ctx._halt(TaskStopped(ctx.task_id, ctx.attempt, f"{what}d"))
        self._finished(ctx.task_id, ctx.attempt, what, body)

    def _finished(self, task_id: str, attempt: int, what: str, body: Mapping[str, Any]) -> None:
        self._emit("completed" if what == "complete" else "failed", task_id=task_id,
                   attempt=attempt, **({"error": body["error"]} if what == "fail" else {}))

    # ---- internals: availability mode ---------------------------------------

    def _set_mode(self, b: Mapping[str, Any]) -> None:
        mode = b.get("partition_mode")
        if mode not in (CONSISTENCY, AVAILABILITY) or mode == self.partition_mode:
            return
        self.partition_mode = str(mode)
        log.info("recoveryd: %s: the engine runs in %s mode", self.node_id, mode)
        if mode == AVAILABILITY and self.buffer_dir is None:
            log.warning("recoveryd: %s: availability mode without buffer_dir: writes that "
                        "cannot reach the engine are buffered in memory only (lost if this "
                        "process ends)", self.node_id)
        self._emit("partition_mode", mode=mode)

    def _buffer_write(self, ctx: TaskContext, kind: str, body: Mapping[str, Any]) -> None:
        """Buffers a write of ctx's attempt; raises BufferFull."""
        fields = {k: v for k, v in body.items() if k not in ("attempt", "version")}
        e = self._buffer.append(ctx.task_id, ctx.attempt, kind, body.get("version"), fields)
        if kind != "checkpoint":
            ctx._halt(TaskStopped(ctx.task_id, ctx.attempt, f"{kind} buffered"))
        log.info("recoveryd: task %s attempt %d: %s buffered (seq %d, %d waiting)", ctx.task_id,
                 ctx.attempt, kind, e["seq"], len(self._buffer))
        self._emit("buffered", task_id=ctx.task_id, attempt=ctx.attempt, what=kind,
                   version=e["version"], seq=e["seq"])
        self._replay_wake.set()

    def _halt_attempt(self, task_id: str, attempt: int, why: TaskStopped) -> None:
        with self._lock:
            run = self._runs.get(task_id)
        if run is not None and run.ctx.attempt == attempt:
            self._halt(run.ctx, why)

    def _conflicted(self, task_id: str, attempt: int, kind: str, version: Optional[int],
                    e: Conflict) -> None:
        """A write of a superseded attempt became a conflict record: that
        attempt stops (its later buffered writes still go, each recorded)."""
        d = e.details
        log.warning("recoveryd: task %s attempt %d: %s is conflict %s, resolved %s", task_id,
                    attempt, kind, e.record_id, d.get("resolution"))
        self._emit("conflict", task_id=task_id, attempt=attempt, what=kind, version=version,
                   conflict_id=e.record_id, resolution=d.get("resolution"),
                   adopted=d.get("adopted"), task_attempt=d.get("attempt"), state=d.get("state"))
        self._halt_attempt(task_id, attempt, Fenced(
            task_id, attempt, f"conflict {e.record_id}: resolved {d.get('resolution')}"))

    def _hurry_newest(self, task_id: str, attempt: int) -> None:
        """The attempt is superseded: its newest buffered write goes next,
        out of turn. Under keep_progress a checkpoint above the stored one
        places the task again; sent in order, each of the cut-off agent's
        newer checkpoints would do so once more (10 attempts in a second
        after a 3.5 s cut); the newest first makes the older ones conflicts
        that adopt nothing. Each is still sent (and recorded) in its turn;
        the newest is only taken out then, never sent twice."""
        if (task_id, attempt) in self._hurried:
            return
        self._hurried.add((task_id, attempt))
        head, newest = self._buffer.head(), self._buffer.newest_of(task_id, attempt)
        if newest is None or head is None or newest["seq"] == head["seq"]:
            return
        if self._replay(newest):
            self._answered_early.add(int(newest["seq"]))

    def _replay_loop(self) -> None:
        backoff = 0.05
        while not self._replay_stop.is_set():
            entry = self._buffer.head()
            if entry is None:
                self._replay_wake.wait(1.0)
                self._replay_wake.clear()
                continue
            try:
                answered = (int(entry["seq"]) in self._answered_early
                            or self._replay(entry))
                self._answered_early.discard(int(entry["seq"]))
            except Exception:  # the replay thread must outlive any bug
                log.exception("recoveryd: %s: replay", self.node_id)
                answered = False
            if answered:
                self._buffer.done(entry["seq"])
                backoff = 0.05
                continue
            # Unreachable still: again after a pause, or once a heartbeat
            # or registration is answered.
            self._replay_wake.wait(backoff * (0.5 + random.random()))
            self._replay_wake.clear()
            backoff = min(backoff * 2, 1.0)

    def _replay(self, entry: Entry) -> bool:
        """Sends one buffered write; False when it did not reach the engine."""
        tid, att, kind = str(entry["task_id"]), int(entry["attempt"]), str(entry["kind"])
        body = {k: v for k, v in entry.items() if k not in ("seq", "task_id", "kind")}
        body.setdefault("node_id", self.node_id)
        if kind != "checkpoint":
            del body["version"]
        method, path = _route(tid, kind)
        fields: Dict[str, Any] = dict(task_id=tid, attempt=att, what=kind,
                                      version=entry.get("version"), seq=entry["seq"])
        # Not in the heartbeat's metrics: failures here are the partition's,
        # and the answers to a superseded attempt's writes (409) are no
        # fault of this agent (an error rate that stays high after a heal
        # would get it failed again and again by the metrics detector).
        try:
            self._http.request(method, path, body, idempotent=True,
                               timeout=self._request_timeout(),
                               deadline=time.monotonic() + self.lease)
        except RecoverydError as e:
            if _unreachable(e) or not isinstance(e, ApiError):
                return False
            if isinstance(e, Conflict) and e.record_id is not None:
                self._conflicted(tid, att, kind, entry.get("version"), e)
                self._hurry_newest(tid, att)  # the replay thread's own
                return True
            # stale_version, fenced, a finished task's conflict, 4xx: answered,
            # and never applied by repeating it.
            log.warning("recoveryd: task %s attempt %d: buffered %s (seq %d) dropped: %s", tid,
                        att, kind, entry["seq"], e)
            self._emit("dropped", code=e.code, status=e.status, **fields)
            if e.code == "fenced":
                self._halt_attempt(tid, att, Fenced(tid, att, f"engine answered: {e.message}"))
            return True
        self._emit("replayed", **fields)
        if kind != "checkpoint":
            self._finished(tid, att, kind, body)
        return True


def _route(task_id: str, kind: str) -> Tuple[str, str]:
    """The method and path of a task write of ``kind``."""
    if kind == "checkpoint":
        return "PUT", f"/api/v1/tasks/{task_id}/checkpoint"
    return "POST", f"/api/v1/tasks/{task_id}/{kind}"
