"""The SDK's side of the contract on answers a real engine gives only in
rare moments, or only once the engine fixes of issue 14 are in (503
outcome_unknown, revocations naming attempts): a scripted engine (fake.py)."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Deque, Dict, Iterator, List, Optional

import pytest

import engine as eng
from fake import Answer, FakeEngine, error
from recoveryd import Agent, Client, Fenced, OutcomeUnknown, Revoked, TaskContext, TaskStopped

TID = "0b7f3b9e-58a5-4a51-9d1c-3c1f1a6b2a10"


@pytest.fixture
def fake() -> Iterator[FakeEngine]:
    f = FakeEngine()
    yield f
    f.close()


def task(attempt: int, checkpoint: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    return {"task_id": TID, "state": "assigned", "attempt": attempt, "payload": {"n": 1},
            "checkpoint": checkpoint, "requirements": {"slots": 1, "labels": {}}}


class Script:
    """Heartbeat answers: queued ones first, then an empty one. ``extra``
    goes into the registration's and every heartbeat's answer."""

    def __init__(self, fake: FakeEngine, node_id: str = "py-f", **extra: Any) -> None:
        self.queue: Deque[Dict[str, Any]] = deque()
        self.served = 0
        self.extra = extra
        fake.route("POST", "/api/v1/nodes", lambda b: (201, {
            "node_id": b["node_id"], "epoch": 1, "heartbeat_interval_ms": 20, "lease_ms": 900,
            **self.extra}))
        fake.route("POST", f"/api/v1/nodes/{node_id}/heartbeat", self.answer)

    def answer(self, body: Any) -> Answer:
        self.served += 1
        a = {"state": "alive", "lease_ms": 900, "assignments": [], "revoked": [], **self.extra}
        if self.queue:
            a.update(self.queue.popleft())
        return 200, a

    def then(self, **answer: Any) -> None:
        """Queues ``answer`` and waits until it was served, plus one more."""
        self.queue.append(answer)
        eng.wait_for(lambda: not self.queue, 5, "the answer served")
        n = self.served
        eng.wait_for(lambda: self.served > n, 5, "one more heartbeat")


def waiting_handler(log: List[Any]) -> Any:
    def run(ctx: TaskContext) -> Any:
        log.append(("started", ctx.attempt))
        while not ctx.wait(0.01):
            pass
        log.append(("stopped", type(ctx.stop_reason).__name__))
        ctx.raise_if_cancelled()

    return run


def test_revocations_drop_only_the_attempt_they_name(fake: FakeEngine) -> None:
    s = Script(fake)
    log: List[Any] = []
    with Agent("py-f", [fake.url], handler=waiting_handler(log)) as a:
        s.then(assignments=[task(3)])
        assert a.running_tasks() == {TID: 3}
        s.then(revocations=[{"task_id": TID, "attempt": 2}], revoked=[TID])
        assert a.running_tasks() == {TID: 3} and log == [("started", 3)]
        s.then(revocations=[{"task_id": TID, "attempt": 3}], revoked=[TID])
        eng.wait_for(lambda: ("stopped", "Revoked") in log, 5, "the handler stopped")
        # Never run again: the engine resending attempt 3 starts nothing.
        s.then(assignments=[task(3)])
        assert log == [("started", 3), ("stopped", "Revoked")]
    assert fake.count("POST", f"/api/v1/tasks/{TID}") == 0


def test_legacy_revoked_beside_the_running_attempt_is_ignored(fake: FakeEngine) -> None:
    """Engines before `revocations`: a task paused and placed back here showed
    up in one answer both assigned (the attempt we run) and revoked."""
    s = Script(fake)
    log: List[Any] = []
    with Agent("py-f", [fake.url], handler=waiting_handler(log)) as a:
        s.then(assignments=[task(4)])
        s.then(assignments=[task(4)], revoked=[TID])
        assert a.running_tasks() == {TID: 4}
        s.then(revoked=[TID])
        eng.wait_for(lambda: ("stopped", "Revoked") in log, 5, "the handler stopped")


def test_fenced_checkpoint_stops_the_task_and_nothing_more_is_written(fake: FakeEngine) -> None:
    s = Script(fake)
    seen: List[Any] = []
    fake.route("PUT", f"/api/v1/tasks/{TID}/checkpoint",
               lambda b: error(409, "fenced", attempt=b["attempt"] + 1, state="assigned"))

    def handler(ctx: TaskContext) -> Any:
        try:
            ctx.checkpoint({"i": 1})
        except TaskStopped as e:
            seen.append(e)
            assert ctx.cancelled
            raise
        return {}

    with Agent("py-f", [fake.url], handler=handler):
        s.then(assignments=[task(1)])
        eng.wait_for(lambda: seen, 5, "the handler fenced")
        s.then()
    assert isinstance(seen[0], Fenced) and seen[0].attempt == 1
    assert fake.count("PUT", f"/api/v1/tasks/{TID}/checkpoint") == 1
    assert fake.count("POST", f"/api/v1/tasks/{TID}/") == 0


def test_checkpoint_whose_answer_was_lost_is_not_a_conflict(fake: FakeEngine) -> None:
    """The first write lands but its answer is lost; the retry meets
    stale_version (an engine without idempotent checkpoints): what is
    stored decides."""
    s = Script(fake)
    stored: Dict[str, Any] = {}

    def put(b: Any) -> Answer:
        if not stored:
            stored.update(b)
            return None  # applied, answer lost
        if b["version"] <= stored["version"]:
            return error(409, "stale_version", stored_version=stored["version"])
        stored.update(b)
        return 200, {"version": b["version"]}

    fake.route("PUT", f"/api/v1/tasks/{TID}/checkpoint", put)
    fake.route("GET", f"/api/v1/tasks/{TID}/checkpoint", lambda b: (200, {
        "version": stored["version"], "data": stored["data"], "attempt": stored["attempt"],
        "checksum": "fnv1a64:0000000000000000", "updated_at": "2026-01-01T00:00:00.000Z"}))
    fake.route("POST", f"/api/v1/tasks/{TID}/complete", lambda b: (200, task(1)))
    versions: List[int] = []

    def handler(ctx: TaskContext) -> Any:
        versions.append(ctx.checkpoint({"i": 1}))
        versions.append(ctx.checkpoint({"i": 2}))
        return {"ok": True}

    with Agent("py-f", [fake.url], handler=handler):
        s.then(assignments=[task(1)])
        eng.wait_for(lambda: fake.count("POST", f"/api/v1/tasks/{TID}/complete"), 5,
                     "the completion")
    assert versions == [1, 2] and stored["data"] == {"i": 2}
    assert fake.count("PUT", f"/api/v1/tasks/{TID}/checkpoint") == 3


def test_outcome_unknown_is_retried_only_for_idempotent_writes(fake: FakeEngine) -> None:
    s = Script(fake)
    answers = {"PUT": deque([error(503, "outcome_unknown")]),
               "complete": deque([error(503, "outcome_unknown")])}

    def then_ok(key: str, ok: Answer) -> Any:
        return lambda b: answers[key].popleft() if answers[key] else ok

    fake.route("PUT", f"/api/v1/tasks/{TID}/checkpoint", then_ok("PUT", (200, {"version": 1})))
    fake.route("POST", f"/api/v1/tasks/{TID}/complete", then_ok("complete", (200, task(1))))
    fake.route("POST", "/api/v1/recovery/trigger", lambda b: error(503, "outcome_unknown"))
    done: List[str] = []
    agent = Agent("py-f", [fake.url], handler=lambda ctx: ctx.checkpoint({"x": 1}) and {})
    agent.on_event(lambda kind, f: done.append(kind))
    with agent:
        s.then(assignments=[task(1)])
        eng.wait_for(lambda: "completed" in done, 5, "the completion")
    assert fake.count("PUT", f"/api/v1/tasks/{TID}/checkpoint") == 2
    assert fake.count("POST", f"/api/v1/tasks/{TID}/complete") == 2
    # A recovery trigger is not idempotent: tried once, the caller is told.
    with pytest.raises(OutcomeUnknown):
        Client([fake.url]).trigger_recovery("n1")
    assert fake.count("POST", "/api/v1/recovery/trigger") == 1


def test_not_leader_hint_and_timeouts(fake: FakeEngine) -> None:
    leader = FakeEngine()
    slow = FakeEngine()
    try:
        fake.route("GET", "/api/v1/nodes", lambda b: error(503, "not_leader", leader=leader.url))
        leader.route("GET", "/api/v1/nodes", lambda b: (200, {"items": [], "next_cursor": None}))
        assert Client([fake.url]).nodes() == []
        assert leader.count("GET", "/api/v1/nodes") == 1

        gate = threading.Event()

        def hang(body: Any) -> Answer:
            gate.wait(2)
            return None

        slow.route("POST", "/api/v1/backup/trigger", hang)
        slow.route("GET", "/api/v1/nodes", hang)
        c = Client([slow.url, leader.url], timeout=0.2)
        # A read that times out moves on to the next replica ...
        t0 = time.monotonic()
        assert c.nodes() == []
        assert time.monotonic() - t0 < 1.5
        # ... a write that is not idempotent does not: its outcome is unknown.
        c2 = Client([slow.url, leader.url], timeout=0.2)
        with pytest.raises(OutcomeUnknown):
            c2.trigger_backup()
        assert leader.count("POST", "/api/v1/backup/trigger") == 0
        gate.set()
    finally:
        leader.close()
        slow.close()


def test_asyncio_handler_is_cancelled_when_its_attempt_is_revoked(fake: FakeEngine) -> None:
    import asyncio

    from recoveryd.asyncio import AsyncAgent, AsyncTaskContext

    s = Script(fake)
    seen: List[str] = []

    async def main() -> None:
        agent = AsyncAgent("py-f", [fake.url])

        @agent.handler
        async def run(ctx: AsyncTaskContext) -> Any:
            seen.append("started")
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise

        async with agent:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, lambda: s.then(assignments=[task(2)]))
            await loop.run_in_executor(None, lambda: s.then(
                revocations=[{"task_id": TID, "attempt": 2}]))
            for _ in range(250):
                if "cancelled" in seen:
                    break
                await asyncio.sleep(0.02)

    asyncio.run(main())
    assert seen == ["started", "cancelled"]
    assert fake.count("POST", f"/api/v1/tasks/{TID}/") == 0


def test_heartbeats_carry_load_and_the_metrics_detectors_read(fake: FakeEngine) -> None:
    s = Script(fake)
    gate = threading.Event()

    def handler(ctx: TaskContext) -> Any:
        ctx.checkpoint({"i": 1})
        ctx.checkpoint({"i": 2})
        ctx.progress(0.5)
        gate.wait(5)
        return {}

    fake.route("PUT", f"/api/v1/tasks/{TID}/checkpoint", lambda b: (200, {"version": b["version"]}))
    fake.route("POST", f"/api/v1/tasks/{TID}/complete", lambda b: (200, task(1)))
    with Agent("py-f", [fake.url], capacity=3, handler=handler):
        s.then(assignments=[task(1)])
        eng.wait_for(lambda: fake.count("PUT", f"/api/v1/tasks/{TID}/checkpoint") == 2, 5,
                     "two checkpoints")
        s.then()
        s.then()
        beats = [b for m, p, b in fake.calls if p.endswith("/heartbeat")]
        gate.set()
    last = beats[-1]
    assert last["epoch"] == 1 and last["load"] == {"slots_used": 1}
    m = last["metrics"]
    assert m["progress"] == 2.5  # two checkpoints and ctx.progress(0.5)
    assert 0 <= m["error_rate"] <= 1 and m["error_rate"] == 0
    assert m["latency_ms"] > 0
    assert 0 <= m["cpu"] and 0 < m["mem"] < 1
    assert beats[0]["load"] == {"slots_used": 0}


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="node_id 'a b'"):
        Agent("a b", ["http://127.0.0.1:8080"])
    with pytest.raises(ValueError, match="capacity"):
        Agent("ok", ["http://127.0.0.1:8080"], capacity=0)
    with pytest.raises(ValueError, match="endpoint 'ftp://x'"):
        Client(["ftp://x"])
    with pytest.raises(ValueError, match="no endpoint"):
        Client([" "])
    with pytest.raises(ValueError, match="no handler"):
        Agent("ok", ["http://127.0.0.1:8080"]).start()


def test_ids_are_one_path_segment(fake: FakeEngine) -> None:
    fake.route("GET", "/api/v1/nodes/a%2F..%2Fb", lambda b: (200, {"node_id": "a/../b"}))
    assert Client([fake.url]).node("a/../b").node_id == "a/../b"
