"""recoveryd: the Python agent SDK and operator client (standard library only).

- :mod:`recoveryd.agent`: :class:`Agent` runs the tasks the engine assigns
  (heartbeats, checkpoints, lease self-fencing; in availability mode a
  durable buffer of the writes that could not reach the engine);
- :mod:`recoveryd.client`: :class:`Client` for operators (plain dataclasses);
- :mod:`recoveryd.errors`: the exceptions;
- :mod:`recoveryd.asyncio`: the same for asyncio programs.
"""

from .agent import Agent, TaskContext
from .client import Client
from .errors import (
    ApiError,
    BufferFull,
    Conflict,
    ConnectionFailed,
    Fenced,
    NotFound,
    OutcomeUnknown,
    RecoverydError,
    Revoked,
    TaskFailed,
    TaskStopped,
    Unavailable,
)

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "ApiError",
    "BufferFull",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Fenced",
    "NotFound",
    "OutcomeUnknown",
    "RecoverydError",
    "Revoked",
    "TaskContext",
    "TaskFailed",
    "TaskStopped",
    "Unavailable",
]
