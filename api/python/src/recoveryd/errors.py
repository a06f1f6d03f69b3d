"""Exceptions raised by the recoveryd client library.

Every error the engine answers has one shape, ``{"error": {"code", "message",
"details"}}`` (api/openapi.yaml); :class:`ApiError` carries it. The subclasses
let callers catch what they act on without comparing codes.
"""

from __future__ import annotations

from typing import Any, Dict, Optional


class RecoverydError(Exception):
    """Base of every exception this package raises."""


class ApiError(RecoverydError):
    """The engine answered with an error status."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Optional[Dict[str, Any]] = None,
        request_id: Optional[str] = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details: Dict[str, Any] = details or {}
        self.request_id = request_id


class BadRequest(ApiError):
    """400 bad_request (``details.field`` names the offending field)."""


class Unauthorized(ApiError):
    """401 unauthorized: no valid token or client certificate."""


class Forbidden(ApiError):
    """403 forbidden: the token's role may not call this route."""


class NotFound(ApiError):
    """404 not_found."""


class Conflict(ApiError):
    """409: ``fenced``, ``conflict`` or ``stale_version`` (see ``code``).

    A write of a superseded attempt in availability mode answers ``conflict``
    with ``details.conflict_id`` (the conflict record, :meth:`record_id`).
    """

    @property
    def record_id(self) -> Optional[str]:
        """The conflict record's id when this answer recorded one, else None."""
        cid = self.details.get("conflict_id") if self.code == "conflict" else None
        return cid if isinstance(cid, str) else None


class Unavailable(ApiError):
    """503 that outlived every retry: ``not_leader``, ``no_quorum``, ``not_ready``."""


class ConnectionFailed(RecoverydError):
    """No endpoint could be reached (refused, unreachable or timed out) in time."""


class OutcomeUnknown(RecoverydError):
    """A write that is not safe to repeat may or may not have been applied.

    Raised after a 503 ``outcome_unknown`` answer, or when the connection
    failed or timed out after the request was sent. Read the state back to
    learn what happened.
    """


class TaskStopped(RecoverydError):
    """The running attempt of a task may no longer write: stop working on it.

    A handler sees it at its next :meth:`TaskContext.checkpoint` (or
    :meth:`TaskContext.raise_if_cancelled`); the SDK writes nothing more
    with that attempt.
    """

    def __init__(self, task_id: str, attempt: int, reason: str) -> None:
        super().__init__(f"task {task_id} attempt {attempt} stopped: {reason}")
        self.task_id = task_id
        self.attempt = attempt
        self.reason = reason


class Fenced(TaskStopped):
    """The agent's lease ran out, or the engine answered 409 ``fenced``."""


class Revoked(TaskStopped):
    """The engine revoked this attempt (the task moved, was paused or cancelled)."""


class BufferFull(RecoverydError):
    """Availability mode: a write could not reach the engine and the agent's
    buffer (``buffer_max_bytes``) has no room for it; nothing was stored.

    Raised by :meth:`TaskContext.checkpoint`; the checkpoint version is not
    used up, so the handler may call it again once the engine is reachable.
    """

    def __init__(self, entries: int, used: int, limit: int, needed: int) -> None:
        super().__init__(f"write buffer full: {entries} write(s), {used} of {limit} bytes used, "
                         f"{needed} more needed (buffer_max_bytes)")
        self.entries = entries
        self.used = used
        self.limit = limit
        self.needed = needed


class TaskFailed(RecoverydError):
    """Raised by a handler to fail its task with a chosen ``retryable`` flag.

    Any other exception from a handler fails the attempt as retryable.
    """

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


_BY_STATUS = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    503: Unavailable,
}


def api_error(
    status: int,
    code: str,
    message: str,
    details: Optional[Dict[str, Any]] = None,
    request_id: Optional[str] = None,
) -> ApiError:
    """The :class:`ApiError` subclass for ``status``."""
    cls = _BY_STATUS.get(status, ApiError)
    return cls(status, code, message, details, request_id)
