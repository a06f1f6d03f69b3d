"""The SDK against three replicas: failover, redirects, a killed leader."""

from __future__ import annotations

import signal
import time
from typing import Any, List

import pytest

import engine as eng
from recoveryd import Agent, Client, ConnectionFailed
from test_agent import Recorder, stepping_handler

pytestmark = pytest.mark.needs_engine


# The agent must reach the new leader before its lease runs out: an election
# takes 0.3-0.6 s on a quiet machine but took 1 s with every core busy
# (ctest -j), so these clusters give agents 5 heartbeats (2.5 s) of lease,
# not the default 3 (1.5 s).
LONGER_LEASE = "fault_tolerance:\n  detection:\n    failure_threshold: 5\n"


@pytest.mark.parametrize("cluster3", [LONGER_LEASE], indirect=True)
@pytest.mark.parametrize("how", ["kill9", "sigstop"])
def test_leader_lost_under_a_running_agent_costs_it_no_task(cluster3: eng.Cluster,
                                                            how: str) -> None:
    """kill -9 refuses connections at once; a SIGSTOPped leader still accepts
    them and answers nothing: the SDK learns of it by timing out (a third of
    the lease) and moves on to the other replicas."""
    client = Client(cluster3.urls)
    rec = Recorder()
    agent = Agent("py-steady", cluster3.urls, handler=stepping_handler("py-steady", rec, 0.05))
    agent.on_event(rec.listener)
    with agent:
        eng.wait_for(lambda: agent.registered, 10, "registration")
        task = client.submit({"steps": 50})
        eng.wait_for(lambda: rec.find("checkpoint", step=5), 10, "five checkpoints")
        leader = cluster3.leader()
        killed_at = time.monotonic()
        if how == "kill9":
            leader.kill9()
        else:
            leader.signal(signal.SIGSTOP)
        new = cluster3.leader(10)
        assert new is not leader
        done = client.wait_task(task.task_id, timeout=30)
        if how == "sigstop":
            leader.signal(signal.SIGCONT)
    assert done.state == "completed", done
    assert done.result == {"steps": 50, "by": "py-steady"}
    # The same attempt ran it to the end: no stop, no move, no new epoch.
    assert done.attempt == 1
    assert [e for e in rec.events if e["event"] in ("stopped", "lease_lost")] == []
    assert len([e for e in rec.events if e["event"] == "registered"]) == 1
    steps = [e["step"] for e in rec.events if e["event"] == "checkpoint"]
    assert steps == list(range(1, 51))
    assert any(e["at"] > killed_at for e in rec.events if e["event"] == "checkpoint")


def test_client_follows_redirects_and_skips_dead_replicas(cluster3: eng.Cluster) -> None:
    leader = cluster3.leader()
    followers = [e for e in cluster3.engines if e is not leader]
    # A follower alone: writes reach the leader through its 307.
    via_follower = Client([followers[0].url])
    t = via_follower.submit({"x": 1}, priority=7)
    assert via_follower.task(t.task_id).priority == 7
    # A dead endpoint first in the list costs a refused connection, no error.
    dead = f"http://127.0.0.1:{eng.free_port()}"
    c = Client([dead] + cluster3.urls, timeout=1.0)
    assert [x.task_id for x in c.tasks()] == [t.task_id]
    health = c.cluster_health()
    assert health.has_quorum and len(health.replicas) == 3
    assert {r.id for r in c.replicas()} == {1, 2, 3}
    # Every replica down: a clear error once the retry budget is spent.
    nobody = Client([dead], timeout=0.2, retry_for=0.5)
    with pytest.raises(ConnectionFailed):
        nobody.nodes()
