"""An agent in a process of its own, for tests that kill it.

    python3 agent_proc.py NODE_ID ENDPOINTS STEP_SECONDS [BUFFER_DIR]

Runs tasks whose payload is {"steps": N}: one step every STEP_SECONDS, a
checkpoint {"step": i, "by": NODE_ID} after each. Prints one JSON line per
event on stdout: the SDK's events and {"event": "checkpoint", "step": i},
each with ``at``: time.monotonic() (one clock for every process here).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from recoveryd import Agent, TaskContext  # noqa: E402

_out = threading.Lock()


def emit(**fields: Any) -> None:
    with _out:
        sys.stdout.write(json.dumps(dict(fields, at=time.monotonic())) + "\n")
        sys.stdout.flush()


def main() -> None:
    node_id, endpoints, step_s = sys.argv[1], sys.argv[2].split(","), float(sys.argv[3])
    agent = Agent(node_id, endpoints, buffer_dir=sys.argv[4] if len(sys.argv) > 4 else None)

    @agent.handler
    def run(ctx: TaskContext) -> Any:
        step = ctx.checkpoint_data["step"] if ctx.checkpoint_data else 0
        while step < ctx.payload["steps"]:
            if ctx.wait(step_s):
                ctx.raise_if_cancelled()
            step += 1
            ctx.checkpoint({"step": step, "by": node_id})
            emit(event="checkpoint", task_id=ctx.task_id, attempt=ctx.attempt, step=step)
        return {"steps": step, "by": node_id}

    agent.on_event(lambda kind, f: emit(event=kind, **f))
    agent.run_forever()


if __name__ == "__main__":
    main()
