"""Availability mode on the SDK's side (docs/cap-spec: "SDK: durable buffer
and replay"), against the scripted engine (fake.py): writes that cannot
reach the engine are buffered on disk and replayed in order; conflict,
stale_version and fenced answers to a replay; a full buffer; a buffer that
outlives a killed agent; the operator client's conflict records."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest

import engine as eng
from fake import Answer, FakeEngine, error
from recoveryd import (Agent, BufferFull, Client, ConnectionFailed, Fenced, RecoverydError,
                       TaskContext, Unavailable)
from recoveryd._buffer import WriteBuffer
from test_agent import AgentProcess, Recorder
from test_contract import TID, Script

AVAILABLE = {"partition_mode": "availability"}


@pytest.fixture
def fake() -> Iterator[FakeEngine]:
    f = FakeEngine()
    yield f
    f.close()


def job(attempt: int, steps: int, checkpoint: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    return {"task_id": TID, "state": "assigned", "attempt": attempt, "payload": {"steps": steps},
            "checkpoint": checkpoint, "requirements": {"slots": 1, "labels": {}}}


class Store:
    """The fake engine's side of the task's writes: checkpoints applied in
    version order (an identical repeat answers 200 again, a lower version
    409 stale_version), completions and failures recorded; ``log`` holds
    what was applied, in order. ``break_(how)`` makes every write fail that
    way until ``heal()``; ``answer``, when set, answers writes first (a
    conflict record, ...) and None lets them apply."""

    def __init__(self, fake: FakeEngine) -> None:
        self.fake = fake
        self.lock = threading.Lock()
        self.log: List[Tuple[str, int, Any]] = []  # (kind, attempt, version or result)
        self.data: List[Any] = []
        self.failure: Optional[str] = None
        self.answer: Optional[Callable[[str, Any], Answer]] = None
        self.sent: List[Tuple[str, Any]] = []  # every write that reached it
        base = f"/api/v1/tasks/{TID}"
        fake.route("PUT", f"{base}/checkpoint", lambda b: self.write("checkpoint", b))
        fake.route("POST", f"{base}/complete", lambda b: self.write("complete", b))
        fake.route("POST", f"{base}/fail", lambda b: self.write("fail", b))

    def break_(self, how: str) -> None:
        if how == "refused":
            self.fake.set_down(True)
        else:
            self.failure = how

    def heal(self) -> None:
        self.failure = None
        self.fake.set_down(False)

    def versions(self) -> List[int]:
        with self.lock:
            return [v for k, _, v in self.log if k == "checkpoint"]

    def write(self, kind: str, b: Any) -> Answer:
        how = self.failure
        if how == "dropped":
            return None  # the connection closes without an answer
        if how == "timeout":
            time.sleep(0.5)  # longer than a try (a third of the 900 ms lease)
            return None
        if how in ("no_quorum", "not_leader"):
            return error(503, how)
        with self.lock:
            self.sent.append((kind, b))
        if self.answer is not None:
            a = self.answer(kind, b)
            if a is not None:
                return a
        with self.lock:
            if kind != "checkpoint":
                self.log.append((kind, b["attempt"], b.get("result", b.get("error"))))
                return 200, {"task_id": TID, "state": kind + "d"}
            last = [(a, v) for k, a, v in self.log if k == "checkpoint"][-1:]
            if last == [(b["attempt"], b["version"])] and self.data[-1] == b["data"]:
                return 200, {"task_id": TID, "version": b["version"]}
            if last and b["version"] <= last[0][1]:
                return error(409, "stale_version", version=last[0][1])
            self.log.append(("checkpoint", b["attempt"], b["version"]))
            self.data.append(b["data"])
            return 200, {"task_id": TID, "version": b["version"]}


class Stepper:
    """A handler: one step per permit the test gives, a checkpoint after
    each (``pad`` bytes of padding in it); what checkpoint() returned or
    raised is kept. BufferFull leaves the step to be done again."""

    def __init__(self, pad: int = 0) -> None:
        self.permits = threading.Semaphore(0)
        self.pad = pad
        self.versions: List[int] = []
        self.errors: List[RecoverydError] = []

    def give(self, n: int = 1) -> None:
        for _ in range(n):
            self.permits.release()

    def __call__(self, ctx: TaskContext) -> Any:
        step = ctx.checkpoint_version
        try:
            while step < ctx.payload["steps"]:
                while not self.permits.acquire(timeout=0.01):
                    ctx.raise_if_cancelled()
                try:
                    v = ctx.checkpoint({"step": step + 1, "pad": "x" * self.pad})
                except BufferFull as e:
                    self.errors.append(e)
                    continue
                self.versions.append(v)
                step = v
        except RecoverydError as e:
            self.errors.append(e)
            raise
        return {"steps": step}


def events(rec: Recorder, kind: str) -> List[Dict[str, Any]]:
    with rec.lock:
        return [e for e in rec.events if e["event"] == kind]


def buffer_file(d: Any) -> str:
    return os.path.join(str(d), "recoveryd-py-f.jsonl")


def started(fake: FakeEngine, script: Script, h: Stepper, rec: Recorder, steps: int,
            **kw: Any) -> Agent:
    a = Agent("py-f", [fake.url], handler=h, **kw)
    a.on_event(rec.listener)
    a.start()
    script.then(assignments=[job(1, steps)])
    return a


def broken_after_one(store: Store, h: Stepper, how: str, steps: int) -> None:
    """Checkpoint 1 applied; then the store broken ``how`` and ``steps``
    more steps given."""
    h.give(1)
    eng.wait_for(lambda: store.versions() == [1], 5, "checkpoint 1 applied")
    store.break_(how)
    h.give(steps)


def three_buffered(store: Store, h: Stepper, rec: Recorder, how: str) -> None:
    """Checkpoint 1 applied; then the store broken ``how`` and checkpoints
    2 to 4 buffered."""
    broken_after_one(store, h, how, 3)
    eng.wait_for(lambda: len(events(rec, "buffered")) == 3, 10, "three writes buffered")


@pytest.mark.parametrize("how", ["refused", "dropped", "no_quorum", "not_leader", "timeout"])
def test_unreachable_writes_are_buffered_and_replayed_in_order(fake: FakeEngine, tmp_path: Any,
                                                               how: str) -> None:
    """Each way a write can fail to reach a majority: the checkpoint returns
    as written, the writes after it go behind it without a request, the
    lease running out stops nothing, and once the engine answers again
    every write lands once, in order, the completion last."""
    s, store, h, rec = Script(fake, **AVAILABLE), Store(fake), Stepper(), Recorder()
    a = started(fake, s, h, rec, 5, buffer_dir=str(tmp_path))
    try:
        three_buffered(store, h, rec, how)
        if how == "refused":  # heartbeats fail too
            eng.wait_for(lambda: events(rec, "lease_lost"), 5, "the lease run out")
        assert h.versions == [1, 2, 3, 4] and h.errors == []
        assert a.buffered == 3 and a.running_tasks() == {TID: 1}
        # Versions 3 and 4 went straight behind 2: never sent while broken.
        assert [b["version"] for k, b in store.sent] == [1]
        with open(buffer_file(tmp_path)) as f:
            lines = [json.loads(line) for line in f]
        assert [(e["kind"], e["attempt"], e["version"], e["data"]["step"]) for e in lines] == [
            ("checkpoint", 1, v, v) for v in (2, 3, 4)]
        store.heal()
        h.give(1)
        eng.wait_for(lambda: any(k == "complete" for k, _, _ in store.log), 10, "the completion")
        eng.wait_for(lambda: a.buffered == 0, 5, "the buffer empty")
    finally:
        a.stop()
    assert store.log == [("checkpoint", 1, v) for v in range(1, 6)] + [
        ("complete", 1, {"steps": 5})]
    assert [d["step"] for d in store.data] == [1, 2, 3, 4, 5]
    assert [e["version"] for e in events(rec, "replayed")][:3] == [2, 3, 4]
    assert events(rec, "stopped") == [] and h.errors == []
    assert events(rec, "completed")[0]["attempt"] == 1
    # Each write names its writer (a conflict record's node_id).
    assert {b["node_id"] for _, b in store.sent} == {"py-f"}
    assert os.path.getsize(buffer_file(tmp_path)) == 0


@pytest.mark.parametrize("mode", [{}, {"partition_mode": "consistency"}])
def test_consistency_mode_buffers_nothing(fake: FakeEngine, tmp_path: Any,
                                          mode: Dict[str, str]) -> None:
    """An engine in consistency mode (or one that predates the setting):
    the failed write raises in the handler, nothing is buffered."""
    s, store, h, rec = Script(fake, **mode), Store(fake), Stepper(), Recorder()
    a = started(fake, s, h, rec, 5, buffer_dir=str(tmp_path))
    try:
        broken_after_one(store, h, "no_quorum", 1)
        eng.wait_for(lambda: h.errors, 5, "the write failed")
    finally:
        a.stop()
    # The 503s, or a try cut short by the write's deadline (the lease).
    assert isinstance(h.errors[0], (Unavailable, ConnectionFailed)), h.errors
    assert a.partition_mode == "consistency" and a.buffered == 0
    assert events(rec, "buffered") == []
    assert os.path.getsize(buffer_file(tmp_path)) == 0


def test_buffer_outlives_a_killed_agent_and_is_replayed_first(fake: FakeEngine,
                                                              tmp_path: Any) -> None:
    """kill -9 while writes wait: every write the agent had buffered is on
    disk, and the agent started again on that buffer_dir replays them, in
    order, before the writes of the attempt it gets next."""
    s, store = Script(fake, **AVAILABLE), Store(fake)
    proc = AgentProcess("py-f", fake.url, 0.02, str(tmp_path))
    try:
        eng.wait_for(lambda: proc.find(event="registered"), 10, "the agent process registered")
        s.then(assignments=[job(1, 100000)])
        eng.wait_for(lambda: len(store.versions()) >= 2, 10, "two checkpoints applied")
        store.break_("no_quorum")
        eng.wait_for(lambda: len([e for e in proc.events if e["event"] == "buffered"]) >= 5, 10,
                     "five writes buffered")
    finally:
        proc.kill9()
    applied = store.versions()
    buffered = [e["version"] for e in proc.events if e["event"] == "buffered"]
    with open(buffer_file(tmp_path)) as f:
        on_disk = [json.loads(line)["version"] for line in f]
    # Every write acknowledged as buffered was on disk (an event comes
    # after the fsync; one more may have landed before the kill).
    assert on_disk[:len(buffered)] == buffered
    assert on_disk == list(range(applied[-1] + 1, applied[-1] + 1 + len(on_disk)))
    store.heal()
    last = on_disk[-1]
    s.queue.append({"assignments": [job(2, last + 2, {"version": last,
                                                       "data": {"step": last}})]})
    rec, h = Recorder(), Stepper()
    h.give(2)
    a = Agent("py-f", [fake.url], handler=h, buffer_dir=str(tmp_path))
    a.on_event(rec.listener)
    with a:
        eng.wait_for(lambda: any(k == "complete" for k, _, _ in store.log), 10,
                     "attempt 2 completed")
    assert store.log == ([("checkpoint", 1, v) for v in applied + on_disk]
                         + [("checkpoint", 2, last + 1), ("checkpoint", 2, last + 2),
                            ("complete", 2, {"steps": last + 2})])
    assert [e["version"] for e in events(rec, "replayed")][:len(on_disk)] == on_disk


def test_full_buffer_raises_buffer_full(fake: FakeEngine, tmp_path: Any) -> None:
    """At buffer_max_bytes the write raises BufferFull and takes no version;
    done again once the engine answers, it lands in order."""
    s, store, h, rec = Script(fake, **AVAILABLE), Store(fake), Stepper(pad=300), Recorder()
    a = started(fake, s, h, rec, 5, buffer_dir=str(tmp_path), buffer_max_bytes=1024)
    try:
        broken_after_one(store, h, "no_quorum", 3)
        eng.wait_for(lambda: h.errors, 10, "the buffer full")
        assert isinstance(h.errors[0], BufferFull) and h.errors[0].limit == 1024
        assert h.versions == [1, 2, 3] and a.buffered == 2
        store.heal()
        eng.wait_for(lambda: a.buffered == 0, 10, "the buffer replayed")
        h.give(2)
        eng.wait_for(lambda: any(k == "complete" for k, _, _ in store.log), 10, "the completion")
    finally:
        a.stop()
    assert store.versions() == [1, 2, 3, 4, 5] and len(h.errors) == 1


def test_conflict_answers_stop_the_attempt_and_every_write_is_sent(fake: FakeEngine,
                                                                   tmp_path: Any) -> None:
    """The task moved on while the agent was cut off: each replayed write
    of the old attempt comes back as a conflict record (an event each), the
    attempt stops as fenced at the first, and the rest are still sent (each
    is a record, nothing is lost); nothing more is written. After the first
    conflict the attempt's newest write goes out of turn (so that only it
    can adopt under keep_progress), and is not sent again in its turn."""
    s, store, h, rec = Script(fake, **AVAILABLE), Store(fake), Stepper(), Recorder()
    a = started(fake, s, h, rec, 10, buffer_dir=str(tmp_path))

    def moved(kind: str, b: Any) -> Answer:
        if b["attempt"] != 1:
            return None
        return error(409, "conflict", conflict_id=f"c-{b['version']}", resolution="keep_progress",
                     adopted=b["version"] == 4, attempt=2, state="running")

    try:
        three_buffered(store, h, rec, "refused")
        store.answer = moved
        store.heal()
        eng.wait_for(lambda: len(events(rec, "conflict")) == 3, 10, "three conflicts")
        eng.wait_for(lambda: h.errors, 5, "the handler stopped")
    finally:
        a.stop()
    got = [(e["version"], e["conflict_id"], e["resolution"], e["adopted"], e["task_attempt"])
           for e in events(rec, "conflict")]
    assert got == [(2, "c-2", "keep_progress", False, 2), (4, "c-4", "keep_progress", True, 2),
                   (3, "c-3", "keep_progress", False, 2)]
    assert isinstance(h.errors[0], Fenced) and "conflict c-2" in h.errors[0].reason
    stopped = events(rec, "stopped")
    assert len(stopped) == 1 and stopped[0]["error"] == "Fenced"
    assert [(k, b["version"]) for k, b in store.sent] == [("checkpoint", v) for v in (1, 2, 4, 3)]
    assert a.buffered == 0


def test_direct_write_answered_with_a_conflict_record_stops_the_attempt(
        fake: FakeEngine, tmp_path: Any) -> None:
    s, store, h, rec = Script(fake, **AVAILABLE), Store(fake), Stepper(), Recorder()
    store.answer = lambda kind, b: error(409, "conflict", conflict_id="c-1",
                                         resolution="fail_task", adopted=False, attempt=1,
                                         state="failed")
    a = started(fake, s, h, rec, 5, buffer_dir=str(tmp_path))
    try:
        h.give(1)
        eng.wait_for(lambda: h.errors, 5, "the handler stopped")
    finally:
        a.stop()
    assert isinstance(h.errors[0], Fenced)
    assert [e["conflict_id"] for e in events(rec, "conflict")] == ["c-1"]
    assert events(rec, "buffered") == [] and len(store.sent) == 1


def test_stale_and_fenced_replays_are_dropped_with_an_event(fake: FakeEngine,
                                                            tmp_path: Any) -> None:
    """A replay answered stale_version or fenced (no conflict record: the
    engine never takes it) leaves the buffer with a `dropped` event;
    fenced stops the attempt."""
    s, store, h, rec = Script(fake, **AVAILABLE), Store(fake), Stepper(), Recorder()
    a = started(fake, s, h, rec, 10, buffer_dir=str(tmp_path))

    def refuse(kind: str, b: Any) -> Answer:
        if b["version"] == 2:
            return error(409, "stale_version", version=7)
        return error(409, "fenced", attempt=3) if b["version"] > 2 else None

    try:
        three_buffered(store, h, rec, "dropped")
        store.answer = refuse
        store.heal()
        eng.wait_for(lambda: a.buffered == 0, 10, "the buffer replayed")
        eng.wait_for(lambda: h.errors, 5, "the handler stopped")
    finally:
        a.stop()
    assert [(e["version"], e["code"]) for e in events(rec, "dropped")] == [
        (2, "stale_version"), (3, "fenced"), (4, "fenced")]
    assert isinstance(h.errors[0], Fenced)
    assert events(rec, "conflict") == [] and store.versions() == [1]


def test_mode_from_heartbeats_and_in_memory_buffer(fake: FakeEngine,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """A reload reaches a running agent through the heartbeat answer; with
    no buffer_dir the buffer is in memory and a warning says so."""
    s, store, h, rec = Script(fake), Store(fake), Stepper(), Recorder()
    a = started(fake, s, h, rec, 3)
    try:
        assert a.partition_mode == "consistency"
        with caplog.at_level(logging.WARNING, logger="recoveryd.agent"):
            s.extra.update(AVAILABLE)
            s.then()
            assert a.available and [e["mode"] for e in events(rec, "partition_mode")] == [
                "availability"]
        assert any("without buffer_dir" in r.getMessage() for r in caplog.records)
        store.break_("no_quorum")
        h.give(1)
        eng.wait_for(lambda: a.buffered == 1, 10, "one write buffered in memory")
        store.heal()
        h.give(2)
        eng.wait_for(lambda: any(k == "complete" for k, _, _ in store.log), 10, "the completion")
    finally:
        a.stop()
    assert store.versions() == [1, 2, 3]


def test_torn_last_line_is_cut_off(tmp_path: Any) -> None:
    """A crash in the middle of an append: the entries before it load, the
    next append starts a line of its own; answered entries do not come
    back; a second process cannot open the same buffer."""
    path = os.path.join(str(tmp_path), "b.jsonl")
    b = WriteBuffer(path, 1 << 20)
    for v in (1, 2, 3):
        b.append(TID, 1, "checkpoint", v, {"data": {"v": v}})
    b.done(1)
    with pytest.raises(RuntimeError, match="in use by another agent"):
        WriteBuffer(path, 1 << 20)
    b.close()
    with open(path, "ab") as f:
        f.write(b'{"seq":4,"task_id":"')
    b = WriteBuffer(path, 1 << 20)
    assert len(b) == 2 and b.head() == {"seq": 2, "task_id": TID, "attempt": 1,
                                        "kind": "checkpoint", "version": 2, "data": {"v": 2}}
    b.append(TID, 1, "complete", None, {"result": {"ok": True}})
    b.close()
    b = WriteBuffer(path, 1 << 20)
    got = []
    while b.head() is not None:
        e = b.head()
        assert e is not None
        got.append((e["seq"], e["kind"]))
        b.done(e["seq"])
    assert got == [(2, "checkpoint"), (3, "checkpoint"), (4, "complete")]
    assert os.path.getsize(path) == 0
    with pytest.raises(ValueError, match="buffer_max_bytes"):
        WriteBuffer(None, 10)


def test_client_lists_conflict_records(fake: FakeEngine) -> None:
    rec = {"conflict_id": "c-1", "task_id": TID, "attempt": 1, "task_attempt": 2,
           "kind": "checkpoint", "version": 4, "stored_version": 3, "node_id": "a",
           "task_node_id": "b", "resolution": "keep_progress", "adopted": True, "reason": "",
           "resolved_by": "policy", "data": {"step": 4}, "at": "2026-12-03T13:00:00.000Z",
           "new_field": 1}
    fake.route("GET", "/api/v1/conflicts?limit=1000&task_id=",
               lambda b: (200, {"items": [rec], "next_cursor": "x"}))
    fake.route("GET", "/api/v1/conflicts?limit=1000&cursor=x",
               lambda b: (200, {"items": [dict(rec, conflict_id="c-2")], "next_cursor": None}))
    fake.route("GET", "/api/v1/conflicts/c-1", lambda b: (200, rec))
    c = Client([fake.url])
    got = c.conflicts(task_id=TID, resolution="keep_progress")
    assert [x.conflict_id for x in got] == ["c-1", "c-2"]
    one = c.conflict("c-1")
    assert one.adopted and one.data == {"step": 4} and one.extra == {"new_field": 1}
    paths = [p for m, p, _ in fake.calls]
    assert paths[0] == f"/api/v1/conflicts?limit=1000&task_id={TID}&resolution=keep_progress"


def test_answered_entries_are_compacted(tmp_path: Any) -> None:
    """A buffer that never drains is rewritten with what is left once the
    answered entries take more than buffer_max_bytes: the file stays
    bounded and loads the same entries."""
    path = os.path.join(str(tmp_path), "b.jsonl")
    b = WriteBuffer(path, 2048)
    b.append(TID, 1, "checkpoint", 1, {"data": "x" * 100})
    for v in range(2, 200):
        b.append(TID, 1, "checkpoint", v, {"data": "x" * 100})
        head = b.head()
        assert head is not None and head["version"] == v - 1
        b.done(head["seq"])
        assert os.path.getsize(path) <= 2 * 2048 + 400
    b.close()
    b = WriteBuffer(path, 2048)
    assert len(b) == 1 and b.head() == {"seq": 199, "task_id": TID, "attempt": 1,
                                        "kind": "checkpoint", "version": 199, "data": "x" * 100}
