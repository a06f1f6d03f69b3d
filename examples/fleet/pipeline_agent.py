#!/usr/bin/env python3
"""An agent of the example fleet: a simulated model pipeline.

Each task is a pipeline of steps (payload ``{"model": name, "steps": N,
"step_ms": M}``): fetch the data, tokenize it, train N-3 epochs, evaluate.
Every step takes ``step_ms`` and ends with a checkpoint holding where the
pipeline stands and what each step produced, so that a task moved to
another agent (this one killed, partitioned or drained) resumes at the step
after its last checkpoint instead of starting over. The task's result says
which steps this attempt ran and where it resumed, which examples/demo.sh
checks for every task.

    python3 examples/fleet/pipeline_agent.py --id agent-1 \\
        --endpoints http://127.0.0.1:8080,http://127.0.0.1:8081
"""
import argparse
import os
import sys
from typing import Any, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "api", "python", "src"))

from recoveryd import Agent  # noqa: E402  (the SDK from this tree, no install needed)


def step_name(i: int, steps: int) -> str:
    if i == 0:
        return "fetch"
    if i == 1:
        return "tokenize"
    if i == steps - 1:
        return "evaluate"
    return f"train-epoch-{i - 1}"


def run_step(name: str, state: Dict[str, Any]) -> Dict[str, Any]:
    """What a step leaves for the next ones (a stand-in for real work)."""
    if name == "fetch":
        return {"rows": 10_000}
    if name == "tokenize":
        return {"tokens": state["outputs"]["fetch"]["rows"] * 37}
    if name == "evaluate":
        return {"accuracy": round(1 - 0.5 / (1 + len(state["done"])), 4)}
    return {"loss": round(2.0 / (1 + len(state["done"])), 4)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--id", required=True, help="this agent's node id")
    ap.add_argument("--endpoints", default=os.environ.get("RECOVERYD_ENDPOINTS", "http://127.0.0.1:8080"),
                    help="comma-separated replica URLs (RECOVERYD_ENDPOINTS)")
    ap.add_argument("--slots", type=int, default=2, help="tasks run at once")
    ap.add_argument("--zone", default="local", help="a label the scheduler may use")
    args = ap.parse_args()

    agent = Agent(args.id, args.endpoints.split(","), capacity=args.slots, labels={"zone": args.zone})

    @agent.handler
    def pipeline(ctx) -> Dict[str, Any]:
        steps = int(ctx.payload.get("steps", 6))
        step_s = int(ctx.payload.get("step_ms", 500)) / 1000.0
        state: Dict[str, Any] = ctx.checkpoint_data or {"next": 0, "done": [], "outputs": {}}
        resumed_at = state["next"]
        ran: List[str] = []
        while state["next"] < steps:
            name = step_name(state["next"], steps)
            # The step's work: interruptible, so a revoked attempt stops at once.
            if ctx.wait(step_s):
                ctx.raise_if_cancelled()
            state["outputs"][name] = run_step(name, state)
            state["done"].append(name)
            state["next"] += 1
            ran.append(name)
            ctx.checkpoint(state)  # raises once this attempt was stopped: never a stale write
        print(f"{args.id}: {ctx.task_id} attempt {ctx.attempt} done "
              f"(resumed at step {resumed_at}, ran {len(ran)})", flush=True)
        return {"model": ctx.payload.get("model"), "agent": args.id, "attempt": ctx.attempt,
                "resumed_at": resumed_at, "ran": ran, "steps": steps,
                "accuracy": state["outputs"].get("evaluate", {}).get("accuracy")}

    print(f"{args.id}: serving {args.slots} slots on {args.endpoints}", flush=True)
    agent.run_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
