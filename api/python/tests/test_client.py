"""The operator client against a real engine, and bearer tokens."""

from __future__ import annotations

import datetime
import hashlib
import os
import secrets
from typing import Any, Iterator

import pytest

import engine as eng
from recoveryd import Agent, Client, Conflict, ConnectionFailed, NotFound, TaskContext
from recoveryd.client import ClusterHealth, FaultStatus, Node, Recovery, Task
from recoveryd.errors import Forbidden, Unauthorized

pytestmark = pytest.mark.needs_engine


def test_operator_calls_return_dataclasses(engine: eng.Engine) -> None:
    c = Client([engine.url])
    eng.register_raw(engine.url, "py-op-1", slots=3)
    nodes = c.nodes()
    assert [type(n) for n in nodes] == [Node] and nodes[0].node_id == "py-op-1"
    assert nodes[0].capacity == {"slots": 3} and nodes[0].epoch == 1

    t = c.submit({"k": "v"}, priority=9, critical=True, max_attempts=2)
    assert isinstance(t, Task) and t.priority == 9 and t.critical and t.max_attempts == 2
    # Submitting the same id again is idempotent: the same task comes back.
    again = c.submit({"other": 1}, task_id=t.task_id)
    assert again.task_id == t.task_id and again.payload == {"k": "v"}
    assert [x.task_id for x in c.tasks()] == [t.task_id]
    assert c.task(t.task_id).payload == {"k": "v"}
    with pytest.raises(NotFound):
        c.task("00000000-0000-4000-8000-000000000000")
    with pytest.raises(NotFound):
        c.checkpoint(t.task_id)  # none yet

    assert c.drain("py-op-1", reason="maintenance").state == "draining"
    assert c.readmit("py-op-1").state in ("alive", "probation")
    assert c.isolate("py-op-1", reason="test").state == "isolated"
    with pytest.raises(Conflict) as refused:
        c.drain("py-op-1")  # an isolated agent cannot be drained
    assert refused.value.code == "conflict" and refused.value.status == 409
    assert c.readmit("py-op-1").state != "isolated"

    status = c.fault_status()
    assert isinstance(status, FaultStatus) and status.mode in ("normal", "degraded")
    run = c.trigger_recovery("py-op-1", "safe_recovery")
    assert isinstance(run, Recovery) and run.recovery_id
    assert c.recovery(run.recovery_id).node_id == "py-op-1"
    assert run.recovery_id in [r.recovery_id for r in c.recoveries()]
    assert all(f.node_id == "py-op-1" for f in c.faults(node_id="py-op-1"))

    h = c.cluster_health()
    assert isinstance(h, ClusterHealth) and h.has_quorum and h.total_nodes == 1
    assert [r.id for r in c.replicas()] == [1]
    assert c.backups() == []
    removed = c.remove("py-op-1")
    assert removed.state == "left"


def test_task_cancel_retry_filters_and_deadline(engine: eng.Engine) -> None:
    """No agent has these labels: the tasks stay pending until acted on."""
    c = Client([engine.url])
    a = c.submit({"n": 1}, priority=7, labels={"zone": "x", "tier": "gold"})
    b = c.submit({"n": 2}, priority=2, labels={"zone": "x"})
    z = c.submit({"n": 3}, priority=7, labels={"zone": "xy"})
    assert {t.task_id for t in c.tasks(label=("zone", "x"))} == {a.task_id, b.task_id}
    assert [t.task_id for t in c.tasks(label=("zone", "x"), priority=7)] == [a.task_id]
    assert [t.task_id for t in c.tasks(state="pending", priority=7, label=("zone", "xy"))] == [
        z.task_id]
    assert c.tasks(state="running", label=("zone", "x")) == []

    done = c.cancel(a.task_id, reason="not needed")
    assert done.state == "cancelled" and "not needed" in (done.error or "")
    with pytest.raises(Conflict) as again:
        c.cancel(a.task_id)
    assert again.value.code == "conflict" and "already cancelled" in again.value.message
    with pytest.raises(Conflict):
        c.retry(b.task_id)  # pending: only a failed task retries
    with pytest.raises(NotFound):
        c.cancel("00000000-0000-4000-8000-000000000000")
    assert [t.task_id for t in c.tasks(state="cancelled")] == [a.task_id]

    # A deadline a moment away fails the task with a fault; a retry drops
    # the deadline that passed and queues it again.
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(milliseconds=300)
    d = c.submit({"n": 4}, labels={"zone": "nowhere"}, deadline=soon)
    assert d.deadline is not None and d.deadline.endswith("Z")
    failed = c.wait_task(d.task_id, states=("failed",), timeout=10)
    assert "deadline passed" in (failed.error or "")
    assert any(f.metadata.get("task_id") == d.task_id and f.fault_type == "hang"
               for f in c.faults())
    again_pending = c.retry(d.task_id)
    assert again_pending.state == "pending" and again_pending.deadline is None
    assert again_pending.attempt == failed.attempt + 1
    with pytest.raises(ValueError):
        c.submit({}, deadline=datetime.datetime.now())  # naive: refused here


@pytest.fixture
def secured() -> Iterator[Any]:
    """An engine that wants tokens: an admin's and an agent's for py-*."""
    toks = {name: "rdt_" + secrets.token_hex(32) for name in ("admin", "agent")}
    e = eng.Engine()
    path = os.path.join(e.dir, "tokens")
    with open(path, "w") as f:
        for role, secret in toks.items():
            digest = hashlib.sha256(secret.encode()).hexdigest()
            f.write(f"py-{role} {role} sha256:{digest}"
                    + (" nodes=py-*\n" if role == "agent" else "\n"))
    e.extra_yaml = f"security:\n  tokens_file: {path}\n"
    e.start()
    eng.wait_for(e.ready, 15, "the engine ready")
    yield e, toks
    problem = e.stop_and_check()
    e.cleanup(keep=bool(problem))
    assert problem is None, problem


def test_bearer_tokens(secured: Any) -> None:
    e, toks = secured
    with pytest.raises(Unauthorized):
        Client([e.url], token="").nodes()
    admin = Client([e.url], token=toks["admin"])
    assert admin.nodes() == []
    with pytest.raises(Forbidden):
        Client([e.url], token=toks["agent"]).submit({})

    def handler(ctx: TaskContext) -> Any:
        ctx.checkpoint({"half": True})
        return {"ok": True}

    with Agent("py-tok", [e.url], token=toks["agent"], handler=handler) as a:
        eng.wait_for(lambda: a.registered, 10, "registration with the agent's token")
        t = admin.submit({})
        assert admin.wait_task(t.task_id, timeout=15).result == {"ok": True}


def test_tls_with_a_ca_file(tmp_path: Any) -> None:
    import shutil

    if shutil.which("openssl") is None:
        pytest.skip("no openssl to make a certificate")
    e = eng.Engine()
    e.use_tls()
    e.start()
    try:
        eng.wait_for(e.ready, 15, "the engine ready")
        assert e.url.startswith("https://")
        c = Client([e.url], cafile=e.cafile)
        assert c.cluster_health().has_quorum

        def handler(ctx: TaskContext) -> Any:
            return {"v": ctx.checkpoint({"tls": True})}

        with Agent("py-tls", [e.url], cafile=e.cafile, handler=handler):
            t = c.submit({})
            assert c.wait_task(t.task_id, timeout=15).result == {"v": 1}
        # Without the CA the certificate is refused, never trusted blindly.
        with pytest.raises(ConnectionFailed, match="CERTIFICATE_VERIFY_FAILED"):
            Client([e.url], timeout=0.5, retry_for=0.5).nodes()
    finally:
        problem = e.stop_and_check()
        e.cleanup(keep=bool(problem))
    assert problem is None, problem
