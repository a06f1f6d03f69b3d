"""The agent SDK against one real engine."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Dict, List, Optional, Sequence

import pytest

import engine as eng
from recoveryd import Agent, Client, Revoked, TaskContext, TaskStopped

pytestmark = pytest.mark.needs_engine


def test_task_runs_to_completion_with_checkpoints(engine: eng.Engine) -> None:
    seen: List[Dict[str, Any]] = []

    def handler(ctx: TaskContext) -> Any:
        seen.append({"attempt": ctx.attempt, "from": ctx.checkpoint_version})
        step = ctx.checkpoint_data["step"] if ctx.checkpoint_data else 0
        while step < ctx.payload["steps"]:
            step += 1
            assert ctx.checkpoint({"step": step}) == step
        return {"done": step}

    client = Client([engine.url])
    with Agent("py-a1", [engine.url], capacity=2, labels={"zone": "a"}, handler=handler) as agent:
        eng.wait_for(lambda: agent.registered, 10, "registration")
        task = client.submit({"steps": 5}, labels={"zone": "a"})
        done = client.wait_task(task.task_id, timeout=15)
    assert done.state == "completed", done
    assert done.result == {"done": 5}
    assert done.attempt == 1
    assert done.checkpoint is not None and done.checkpoint.version == 5
    assert client.checkpoint(task.task_id).data == {"step": 5}
    assert seen == [{"attempt": 1, "from": 0}]
    node = client.node("py-a1")
    assert node.labels == {"zone": "a"} and node.capacity["slots"] == 2


def test_lost_answers_are_retried_and_accepted(engine: eng.Engine) -> None:
    """The answers to a checkpoint and to the completion are lost on the way
    back (the writes landed): the SDK sends the same writes again and the
    engine takes a repeat of the same attempt, version and data as the
    success it was (no stale_version, no read-back), so the task completes
    once, as attempt 1, with its checkpoints in order."""
    proxy = eng.Proxy(engine.port)
    proxy.drop_answers("/checkpoint", 1)
    proxy.drop_answers("/complete", 1)
    client = Client([engine.url])

    def handler(ctx: TaskContext) -> Any:
        for step in range(1, ctx.payload["steps"] + 1):
            assert ctx.checkpoint({"step": step}) == step
        return {"done": ctx.payload["steps"]}

    try:
        with Agent("py-lossy", [proxy.url], handler=handler) as agent:
            eng.wait_for(lambda: agent.registered, 10, "registration")
            task = client.submit({"steps": 3})
            done = client.wait_task(task.task_id, timeout=15)
    finally:
        proxy.close()
    assert done.state == "completed" and done.attempt == 1, done
    assert done.result == {"done": 3}
    assert done.checkpoint is not None and done.checkpoint.version == 3
    lines = [line for _, line in proxy.requests if task.task_id in line]
    puts = [line for line in lines if line.startswith("PUT ")]
    completes = [line for line in lines if line.endswith("/complete HTTP/1.1")]
    assert len(puts) == 4, lines  # three versions, the first one twice
    assert len(completes) == 2, lines  # the lost one and its repeat
    assert not any(line.startswith("GET ") for line in lines), lines  # no read-back


def test_lost_assignment_is_handed_over_again(engine: eng.Engine) -> None:
    """The heartbeat answer that hands a task over is lost on the way back
    (the engine answered; the connection was cut). The engine tells an
    assignment in one answer and again only after a resend interval (the
    lease) without a start (engine/registry: rd_told), so the answers in
    between do not carry it; the resend does, and the agent runs the task
    as attempt 1: it was not moved, and ran once."""
    proxy = eng.Proxy(engine.port)
    client = Client([engine.url])
    task_id = str(uuid.uuid4())
    proxy.drop_answers("/heartbeat", 1, containing=task_id)
    started: List[float] = []

    def handler(ctx: TaskContext) -> Any:
        started.append(time.monotonic())
        assert ctx.checkpoint({"step": 1}) == 1
        return {"attempt": ctx.attempt}

    try:
        with Agent("py-deaf", [proxy.url], handler=handler) as agent:
            eng.wait_for(lambda: agent.registered, 10, "registration")
            client.submit({"steps": 1}, task_id=task_id)
            done = client.wait_task(task_id, timeout=20)
            lease = agent.lease
    finally:
        proxy.close()
    assert done.state == "completed" and done.attempt == 1, done
    assert done.result == {"attempt": 1}
    assert len(proxy.lost) == 1 and "/heartbeat" in proxy.lost[0][1], proxy.lost
    assert len(started) == 1, started
    # Handed over by the resend, not by the answers right after the loss.
    waited = started[0] - proxy.lost[0][0]
    assert waited >= 0.5 * lease, (waited, lease)


class Recorder:
    """Events of in-process agents, in the order they happened."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: List[Dict[str, Any]] = []

    def add(self, kind: str, **fields: Any) -> None:
        with self.lock:
            self.events.append(dict(fields, event=kind, at=time.monotonic()))

    def listener(self, kind: str, fields: Dict[str, Any]) -> None:
        self.add(kind, **fields)

    def find(self, kind: str, **match: Any) -> Any:
        with self.lock:
            for e in self.events:
                if e["event"] == kind and all(e.get(k) == v for k, v in match.items()):
                    return e
        return None


def stepping_handler(node_id: str, rec: Recorder, step_s: float) -> Any:
    """One step every step_s, a checkpoint after each; records when it
    starts and when it learns it was stopped (at a wait or a checkpoint)."""

    def run(ctx: TaskContext) -> Any:
        rec.add("handler_started", node_id=node_id, task_id=ctx.task_id, attempt=ctx.attempt,
                from_version=ctx.checkpoint_version, data=ctx.checkpoint_data)
        step = ctx.checkpoint_data["step"] if ctx.checkpoint_data else 0
        try:
            while step < ctx.payload["steps"]:
                if ctx.wait(step_s):
                    ctx.raise_if_cancelled()
                step += 1
                ctx.checkpoint({"step": step, "by": node_id})
                rec.add("checkpoint", node_id=node_id, task_id=ctx.task_id, attempt=ctx.attempt,
                        step=step)
        except TaskStopped as e:
            rec.add("handler_cancelled", node_id=node_id, task_id=ctx.task_id,
                    attempt=ctx.attempt, reason=type(e).__name__)
            # Stopped for good: a checkpoint now raises without writing.
            with pytest.raises(TaskStopped):
                ctx.checkpoint({"step": -1, "by": node_id})
            raise
        return {"steps": step, "by": node_id}

    return run


class AgentProcess:
    """tests/agent_proc.py in a process of its own; its JSON event lines
    are read by a thread into ``events``."""

    def __init__(self, node_id: str, url: str, step_s: float,
                 buffer_dir: Optional[str] = None, prefix: Sequence[str] = ()) -> None:
        import json
        import os
        import subprocess
        import sys

        script = os.path.join(os.path.dirname(__file__), "agent_proc.py")
        argv = [*prefix, sys.executable, script, node_id, url, str(step_s)]
        self.proc = subprocess.Popen(argv + ([buffer_dir] if buffer_dir else []),
                                     stdout=subprocess.PIPE, text=True)
        self.events: List[Dict[str, Any]] = []

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.events.append(json.loads(line))

        threading.Thread(target=read, daemon=True).start()

    def find(self, **match: Any) -> Any:
        return next((e for e in list(self.events)
                     if all(e.get(k) == v for k, v in match.items())), None)

    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def test_killed_agent_resumes_on_another_from_its_checkpoint(engine: eng.Engine) -> None:
    client = Client([engine.url])
    victim = AgentProcess("py-victim", engine.url, 0.1)
    try:
        eng.wait_for(lambda: victim.find(event="registered"), 10, "the agent process registered")
        task = client.submit({"steps": 12})
        eng.wait_for(lambda: victim.find(event="checkpoint", step=3), 10, "its third checkpoint")
    finally:
        victim.kill9()
    stored = client.checkpoint(task.task_id)
    assert stored.version >= 3 and stored.data["by"] == "py-victim"
    rec = Recorder()
    with Agent("py-heir", [engine.url], handler=stepping_handler("py-heir", rec, 0.01)):
        done = client.wait_task(task.task_id, timeout=20)
    assert done.state == "completed" and done.result == {"steps": 12, "by": "py-heir"}
    assert done.attempt == 2
    start = rec.find("handler_started", node_id="py-heir")
    # It resumed from the newest checkpoint the victim stored, not from zero.
    assert start["from_version"] == stored.version
    assert start["data"] == stored.data
    steps = [e["step"] for e in rec.events if e["event"] == "checkpoint"]
    assert steps == list(range(stored.data["step"] + 1, 13))


def test_agent_restarted_within_its_lease_gets_its_task_back(engine: eng.Engine) -> None:
    """An agent process restarted at once (systemd Restart=) registers again
    before its lease ran out: its task must come back (a new attempt, from
    the newest checkpoint), here or elsewhere (the scheduler reclaims tasks
    left under an older epoch: engine/recover/sched.c)."""
    client = Client([engine.url])
    first = AgentProcess("py-phoenix", engine.url, 0.05)
    try:
        eng.wait_for(lambda: first.find(event="registered"), 10, "registration")
        task = client.submit({"steps": 10})
        eng.wait_for(lambda: first.find(event="checkpoint", step=2), 10, "two checkpoints")
    finally:
        first.kill9()
    again = AgentProcess("py-phoenix", engine.url, 0.01)
    try:
        eng.wait_for(lambda: again.find(event="registered"), 10, "registration again")
        done = client.wait_task(task.task_id, timeout=6)
        assert done.state == "completed" and done.attempt == 2
    finally:
        again.kill9()


def test_partitioned_agent_stops_before_the_engine_moves_its_task(engine: eng.Engine) -> None:
    """Lease self-fencing (DESIGN.md decision 4): an agent cut from the engine
    stops its handler by itself, before safe_recovery hands the task on."""
    client = Client([engine.url])
    proxy = eng.Proxy(engine.port)
    rec = Recorder()
    cut_at = 0.0
    a = Agent("py-cut", [proxy.url], handler=stepping_handler("py-cut", rec, 0.05))
    a.on_event(rec.listener)
    b = Agent("py-other", [engine.url], handler=stepping_handler("py-other", rec, 0.005))
    b.on_event(rec.listener)
    try:
        a.start()
        eng.wait_for(lambda: a.registered, 10, "py-cut registered")
        # Critical: a lost agent's critical task moves by safe_recovery,
        # which waits for the agent's lease to run out (policies/select.lua).
        task = client.submit({"steps": 60}, critical=True)
        eng.wait_for(lambda: rec.find("checkpoint", node_id="py-cut"), 10, "py-cut's checkpoint")
        b.start()
        eng.wait_for(lambda: b.registered, 10, "py-other registered")
        cut_at = time.monotonic()
        proxy.set_cut(True)
        moved = eng.wait_for(lambda: rec.find("handler_started", node_id="py-other"), 20,
                             "the task moved to py-other")
        stopped = rec.find("handler_cancelled", node_id="py-cut")
        assert stopped is not None, "py-cut's handler was not stopped"
        assert stopped["reason"] == "Fenced"
        assert cut_at < stopped["at"] < moved["at"], (cut_at, stopped, moved)
        sdk_stop = rec.find("stopped", node_id="py-cut", task_id=task.task_id)
        assert sdk_stop["error"] == "Fenced" and "lease" in sdk_stop["reason"]
        assert moved["attempt"] == 2 and moved["data"]["by"] == "py-cut"
        done = client.wait_task(task.task_id, timeout=20)
        assert done.state == "completed" and done.result == {"steps": 60, "by": "py-other"}
        # Healed, py-cut comes back with a new epoch and writes nothing
        # more with its old attempt.
        proxy.set_cut(False)
        eng.wait_for(lambda: len([e for e in rec.events if e["event"] == "registered"
                                  and e["node_id"] == "py-cut"]) >= 2, 10,
                     "py-cut registered again")
        late = [line for at, line in proxy.requests if at > cut_at and "/tasks/" in line]
        assert late == [], late
        assert a.running_tasks() == {}
    finally:
        a.stop()
        b.stop()
        proxy.close()


def test_asyncio_agent_and_client(engine: eng.Engine) -> None:
    import asyncio

    from recoveryd.asyncio import AsyncAgent, AsyncClient, AsyncTaskContext

    async def main() -> Any:
        client = AsyncClient([engine.url])
        agent = AsyncAgent("py-async", [engine.url], capacity=2)
        loop_thread: List[Any] = []

        @agent.handler
        async def run(ctx: AsyncTaskContext) -> Any:
            loop_thread.append(threading.get_ident())
            for i in range(1, 4):
                await asyncio.sleep(0.01)
                assert await ctx.checkpoint({"i": i}) == i
            return {"sum": ctx.payload["a"] + ctx.payload["b"]}

        async with agent:
            await asyncio.sleep(0)
            t1 = await client.submit({"a": 1, "b": 2})
            t2 = await client.submit({"a": 3, "b": 4})
            done = await asyncio.gather(client.wait_task(t1.task_id, timeout=15),
                                        client.wait_task(t2.task_id, timeout=15))
        return done, loop_thread, threading.get_ident()

    done, threads, loop_ident = asyncio.run(main())
    assert [d.result for d in done] == [{"sum": 3}, {"sum": 7}]
    assert all(d.checkpoint.version == 3 for d in done)
    # The coroutines ran on the program's own event loop.
    assert threads == [loop_ident, loop_ident]


def test_revoked_task_stops_and_its_old_attempt_is_fenced(engine: eng.Engine) -> None:
    """An operator's fast_recovery of a working agent moves its task: the
    heartbeat answer revokes it there and the handler stops with Revoked
    (it writes nothing meanwhile, so only the revocation can tell it); the
    old attempt's late write is fenced; the new attempt finishes it."""
    client = Client([engine.url])
    rec = Recorder()
    late: List[Any] = []

    def quiet(ctx: TaskContext) -> Any:
        ctx.checkpoint({"step": 1, "by": "py-x"})
        rec.add("checkpoint", node_id="py-x", step=1)
        while not ctx.wait(0.02):
            ctx.progress()
        rec.add("handler_cancelled", node_id="py-x", reason=type(ctx.stop_reason).__name__)
        # The SDK refuses to write with the stopped attempt ...
        with pytest.raises(Revoked):
            ctx.checkpoint({"step": 2, "by": "py-x"})
        # ... and the engine would too.
        code, body = eng.http_json("PUT", f"{engine.url}/api/v1/tasks/{ctx.task_id}/checkpoint",
                                   {"attempt": ctx.attempt, "version": 9, "data": {}})
        late.append((code, body["error"]["code"]))
        ctx.raise_if_cancelled()

    x = Agent("py-x", [engine.url], handler=quiet)
    y = Agent("py-y", [engine.url], handler=stepping_handler("py-y", rec, 0.01))
    try:
        x.start()
        eng.wait_for(lambda: x.registered, 10, "py-x registered")
        task = client.submit({"steps": 5})
        eng.wait_for(lambda: rec.find("checkpoint", node_id="py-x"), 10, "py-x working")
        y.start()
        eng.wait_for(lambda: y.registered, 10, "py-y registered")
        client.trigger_recovery("py-x", "fast_recovery")
        stopped = eng.wait_for(lambda: rec.find("handler_cancelled", node_id="py-x"), 10,
                               "py-x's handler stopped")
        assert stopped["reason"] == "Revoked"
        done = client.wait_task(task.task_id, timeout=20)
        assert done.state == "completed" and done.result == {"steps": 5, "by": "py-y"}
        assert done.attempt == 2
        start = rec.find("handler_started", node_id="py-y")
        assert start["attempt"] == 2 and start["data"] == {"step": 1, "by": "py-x"}
        eng.wait_for(lambda: late, 5, "the late write")
        assert late == [(409, "fenced")]
    finally:
        x.stop()
        y.stop()


def test_cancelled_task_stops_its_handler_as_a_revocation(engine: eng.Engine) -> None:
    """An operator cancels a running task: the heartbeat answer revokes it,
    the handler stops with Revoked, and the attempt's late completion is
    fenced; the task stays cancelled."""
    client = Client([engine.url])
    rec = Recorder()
    late: List[Any] = []

    def quiet(ctx: TaskContext) -> Any:
        ctx.checkpoint({"step": 1})
        rec.add("checkpoint", node_id="py-c", step=1)
        while not ctx.wait(0.02):
            ctx.progress()
        rec.add("handler_cancelled", node_id="py-c", reason=type(ctx.stop_reason).__name__)
        code, body = eng.http_json("POST", f"{engine.url}/api/v1/tasks/{ctx.task_id}/complete",
                                   {"attempt": ctx.attempt, "result": {}})
        late.append((code, body["error"]["code"]))
        ctx.raise_if_cancelled()

    a = Agent("py-c", [engine.url], handler=quiet)
    try:
        a.start()
        eng.wait_for(lambda: a.registered, 10, "py-c registered")
        task = client.submit({"steps": 5})
        eng.wait_for(lambda: rec.find("checkpoint", node_id="py-c"), 10, "py-c working")
        assert client.cancel(task.task_id, reason="operator test").state == "cancelled"
        stopped = eng.wait_for(lambda: rec.find("handler_cancelled", node_id="py-c"), 10,
                               "py-c's handler stopped")
        assert stopped["reason"] == "Revoked"
        eng.wait_for(lambda: late, 5, "the late completion")
        assert late == [(409, "fenced")]
        t = client.task(task.task_id)
        assert t.state == "cancelled" and "operator test" in (t.error or "")
    finally:
        a.stop()
