"""The agent SDK against one real engine."""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List

import pytest

import engine as eng
from recoveryd import Agent, Client, TaskContext

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
