"""The history of a chaos run: JSON lines, appended by every process.

Each line is one of:

- ``{"type": "invoke", "p": PROCESS, "i": N, "t": T, "op": OP, ...fields}``
  before an operation, and ``{"type": "ok"|"fail"|"unknown", "p": PROCESS,
  "i": N, "t": T, ...}`` once its outcome is known (``fail``: it certainly
  did not take effect; ``unknown``: it may have). An invoke with no outcome
  (the process was killed) is unknown, completed at infinity.
- ``{"type": "event", "p": PROCESS, "t": T, "op": OP, ...}``: something seen
  at one instant (an attempt started with checkpoint version V; a final
  read of a task; a registration).
- ``{"type": "nemesis", "t": T, "kind": K, "target": X, "end": T2, ...}``: a
  fault, active from t to end.

Times are CLOCK_MONOTONIC seconds (time.monotonic()), one clock for every
process on the host, so invoke and complete times of different processes
compare. Operations: ``submit``, ``checkpoint``, ``complete`` (invokes and
outcomes); ``start``, ``read`` (events).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple


class Recorder:
    """Appends one process's operations to a history file (thread-safe).

    Every line is written with a single write() on an O_APPEND descriptor,
    so several processes can share a file."""

    def __init__(self, path: str, process: str) -> None:
        self.process = process
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()
        self._next = 0

    def _write(self, rec: Dict[str, Any]) -> None:
        os.write(self._fd, (json.dumps(rec, separators=(",", ":")) + "\n").encode())

    def invoke(self, op: str, **fields: Any) -> int:
        with self._lock:
            self._next += 1
            i = self._next
            self._write(dict(type="invoke", p=self.process, i=i, t=time.monotonic(), op=op,
                             **fields))
        return i

    def done(self, i: int, outcome: str, **fields: Any) -> None:
        assert outcome in ("ok", "fail", "unknown"), outcome
        with self._lock:
            self._write(dict(type=outcome, p=self.process, i=i, t=time.monotonic(), **fields))

    def event(self, op: str, **fields: Any) -> None:
        with self._lock:
            self._write(dict(type="event", p=self.process, t=time.monotonic(), op=op, **fields))

    def nemesis(self, kind: str, start: float, end: float, **fields: Any) -> None:
        with self._lock:
            self._write(dict(type="nemesis", t=start, end=end, kind=kind, **fields))

    def close(self) -> None:
        os.close(self._fd)


@dataclass
class Op:
    """An operation: invoke and complete paired (complete = inf if never)."""

    process: str
    op: str
    invoke: float
    complete: float
    outcome: str  # ok, fail, unknown, event
    task: str = ""
    attempt: int = 0
    version: int = 0
    fields: Dict[str, Any] = field(default_factory=dict)

    def brief(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        if math.isinf(self.complete):
            d["complete"] = None
        return d


@dataclass
class Fault:
    kind: str
    start: float
    end: float
    target: str
    fields: Dict[str, Any] = field(default_factory=dict)


def load(path: str) -> Tuple[List[Op], List[Fault]]:
    """The history's operations (sorted by invoke time) and faults."""
    open_: Dict[Tuple[str, int], Dict[str, Any]] = {}
    ops: List[Op] = []
    faults: List[Fault] = []
    skip = {"type", "p", "i", "t", "op", "task", "attempt", "version"}

    def make(inv: Dict[str, Any], complete: float, outcome: str,
             extra: Optional[Dict[str, Any]] = None) -> Op:
        f = {k: v for k, v in inv.items() if k not in skip}
        if extra:
            f.update({k: v for k, v in extra.items() if k not in skip})
        return Op(process=inv["p"], op=inv["op"], invoke=inv["t"], complete=complete,
                  outcome=outcome, task=str(inv.get("task", "")),
                  attempt=int(inv.get("attempt") or 0), version=int(inv.get("version") or 0),
                  fields=f)

    with open(path) as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except ValueError:
                raise ValueError(f"{path}:{n}: not JSON: {line[:80]!r}") from None
            kind = r.get("type")
            if kind == "invoke":
                open_[(r["p"], r["i"])] = r
            elif kind in ("ok", "fail", "unknown"):
                inv = open_.pop((r["p"], r["i"]), None)
                if inv is None:
                    raise ValueError(f"{path}:{n}: outcome of an operation never invoked")
                ops.append(make(inv, r["t"], kind, r))
            elif kind == "event":
                ops.append(make(r, r["t"], "event"))
            elif kind == "nemesis":
                faults.append(Fault(kind=r["kind"], start=r["t"], end=r["end"],
                                    target=str(r.get("target", "")),
                                    fields={k: v for k, v in r.items()
                                            if k not in ("type", "t", "end", "kind", "target")}))
            else:
                raise ValueError(f"{path}:{n}: unknown line type {kind!r}")
    for inv in open_.values():
        ops.append(make(inv, math.inf, "unknown", {"error": "no outcome recorded"}))
    ops.sort(key=lambda o: (o.invoke, o.complete))
    faults.sort(key=lambda f: f.start)
    return ops, faults
