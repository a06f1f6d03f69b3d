"""A chaos workload agent: a multi-step task with a checkpoint per step.

    python3 agent.py --id agent-1 --endpoints URL,URL,URL --history FILE \\
        --process agent-1.0

Runs tasks whose payload is ``{"steps": N, "step_ms": M}`` (as
examples/fleet/pipeline_agent.py): one step every M ms, then a checkpoint
``{"step": i, "by": process, "attempt": a}``; a checkpoint the engine could
not be reached for is tried again (same version) until it lands or the
attempt is stopped. The result is ``{"steps": N, "attempt": a, "by": ...}``.

Every operation goes to FILE as JSON lines (history.py's format): an
``invoke`` line before, an ``ok`` / ``fail`` / ``unknown`` line after (none
when the process is killed in between: the checker counts it unknown).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Dict

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(HERE, "..", "..", "api", "python", "src"))
sys.path.insert(0, HERE)

from history import Recorder  # noqa: E402
from recoveryd import Agent, RecoverydError, TaskContext, TaskStopped  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--id", required=True, help="node id")
    ap.add_argument("--endpoints", required=True, help="comma-separated replica URLs")
    ap.add_argument("--history", required=True, help="JSON lines file to append to")
    ap.add_argument("--process", required=True, help="this process's name in the history")
    ap.add_argument("--slots", type=int, default=2)
    args = ap.parse_args()

    rec = Recorder(args.history, args.process)
    agent = Agent(args.id, args.endpoints.split(","), capacity=args.slots)
    # task_id -> the invoke id of its pending "complete" (the SDK posts it
    # after the handler returns; its events say how that went).
    pending: Dict[str, int] = {}

    @agent.handler
    def run(ctx: TaskContext) -> Any:
        rec.event("start", task=ctx.task_id, attempt=ctx.attempt,
                  version=ctx.checkpoint_version,
                  step=(ctx.checkpoint_data or {}).get("step", 0))
        steps = int(ctx.payload.get("steps", 5))
        step_s = int(ctx.payload.get("step_ms", 100)) / 1000.0
        step = int((ctx.checkpoint_data or {}).get("step", 0))
        while step < steps:
            if ctx.wait(step_s):
                ctx.raise_if_cancelled()
            data = {"step": step + 1, "by": args.process, "attempt": ctx.attempt}
            while True:
                version = ctx.checkpoint_version + 1
                if ctx.cancelled:  # nothing is sent: a definite failure
                    op = rec.invoke("checkpoint", task=ctx.task_id, attempt=ctx.attempt,
                                    version=version, data=data)
                    rec.done(op, "fail", error="attempt stopped before the write")
                    ctx.raise_if_cancelled()
                op = rec.invoke("checkpoint", task=ctx.task_id, attempt=ctx.attempt,
                                version=version, data=data)
                try:
                    ctx.checkpoint(data)
                except TaskStopped as e:
                    rec.done(op, "unknown", error=f"{type(e).__name__}: {e}")
                    raise
                except RecoverydError as e:
                    rec.done(op, "unknown", error=f"{type(e).__name__}: {e}")
                    # Not at once: just after a lease ran out the SDK fails
                    # writes immediately for a moment before it stops them.
                    ctx.wait(0.05)
                    continue
                rec.done(op, "ok")
                break
            step += 1
        pending[ctx.task_id] = rec.invoke("complete", task=ctx.task_id, attempt=ctx.attempt,
                                          version=ctx.checkpoint_version)
        return {"steps": steps, "attempt": ctx.attempt, "by": args.process}

    def on_event(kind: str, f: Dict[str, Any]) -> None:
        tid = str(f.get("task_id", ""))
        if kind == "completed" and tid in pending:
            rec.done(pending.pop(tid), "ok")
        elif kind == "refused" and tid in pending:
            rec.done(pending.pop(tid), "fail", error=str(f.get("code")))
        elif kind in ("registered", "lease_lost"):
            rec.event(kind, **{k: v for k, v in f.items() if k != "node_id"})

    agent.on_event(on_event)
    agent.run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
