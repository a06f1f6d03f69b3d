"""HTTP transport shared by the agent SDK and the operator client.

One request at a time per call, a new connection per try (loopback and LAN
round trips are cheap; a kept-alive connection to a replica that died would
cost a timeout to find out). The rules (api/openapi.yaml, docs of the
clients in api/python/README.md):

- 307/308 is followed to the leader (same method and body);
- a refused or failed connection (nothing was sent), 503 ``not_leader``,
  ``no_quorum`` or ``not_ready`` move on to the next endpoint (or to
  ``details.leader`` when the answer names it);
- a timeout or a connection lost after the request was sent, and 503
  ``outcome_unknown``, leave the outcome unknown: an idempotent request is
  tried again, another raises :class:`OutcomeUnknown`;
- 429 waits ``Retry-After`` and tries again;
- after a round over every endpoint without an answer, a backoff (50 ms
  doubling up to 1 s, with jitter) before the next round, until the
  request's deadline.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

from .errors import ApiError, ConnectionFailed, OutcomeUnknown, Unavailable, api_error

log = logging.getLogger("recoveryd")

USER_AGENT = "recoveryd-python/0.1"
# 503 codes after which nothing was done: try another replica.
_MOVE_ON = {"not_leader", "no_quorum", "not_ready"}
_MAX_REDIRECTS = 5
# How long a replica that refused or timed out is not chased through redirects.
_DOWN_FOR = 2.0


@dataclass
class Response:
    status: int
    body: Any
    headers: Dict[str, str]


class _NotSent(Exception):
    """The connection failed before the request was sent: safe to try again."""


class _Ambiguous(Exception):
    """The request may have reached the engine: its outcome is unknown."""


def parse_endpoints(endpoints: Sequence[str]) -> List[str]:
    """Base URLs ``http(s)://host:port`` without a trailing slash.

    Raises ValueError naming the first malformed one.
    """
    out: List[str] = []
    for raw in endpoints:
        e = raw.strip().rstrip("/")
        if not e:
            continue
        u = urllib.parse.urlsplit(e)
        if u.scheme not in ("http", "https") or not u.hostname or u.path or u.query:
            raise ValueError(f"endpoint {raw!r} is not a base URL like http://127.0.0.1:8080")
        out.append(e)
    if not out:
        raise ValueError("no endpoint given (RECOVERYD_ENDPOINTS or endpoints=)")
    return out


def _base_of(url: str) -> str:
    u = urllib.parse.urlsplit(url)
    return f"{u.scheme}://{u.netloc}"


class Transport:
    """JSON over HTTP to a list of replicas, with failover (thread-safe)."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        token: Optional[str] = None,
        cafile: Optional[str] = None,
        certfile: Optional[str] = None,
        keyfile: Optional[str] = None,
        timeout: float = 5.0,
        retry_for: float = 15.0,
    ) -> None:
        self.endpoints = parse_endpoints(endpoints)
        self.token = token
        self.timeout = timeout
        self.retry_for = retry_for
        self._ssl: Optional[ssl.SSLContext] = None
        if cafile or certfile or any(e.startswith("https:") for e in self.endpoints):
            self._ssl = ssl.create_default_context(cafile=cafile)
            if certfile:
                self._ssl.load_cert_chain(certfile, keyfile)
        self._lock = threading.Lock()
        self._current = 0
        # Base URL -> monotonic time until which it counts as down: a
        # replica that just timed out or refused is not chased again
        # through a redirect (a SIGSTOPped leader still accepts
        # connections, and the followers name it until they elect another).
        self._down: Dict[str, float] = {}

    # ---- one try ---------------------------------------------------------

    def _once(
        self, url: str, method: str, payload: Optional[bytes], timeout: float, request_id: str
    ) -> Response:
        u = urllib.parse.urlsplit(url)
        path = u.path or "/"
        if u.query:
            path += "?" + u.query
        conn: http.client.HTTPConnection
        if u.scheme == "https":
            ctx = self._ssl or ssl.create_default_context()
            conn = http.client.HTTPSConnection(
                u.hostname or "", u.port, timeout=timeout, context=ctx
            )
        else:
            conn = http.client.HTTPConnection(u.hostname or "", u.port, timeout=timeout)
        headers = {
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
            "X-Request-Id": request_id,
            "Connection": "close",
        }
        if payload is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            try:
                conn.connect()
            except (OSError, ssl.SSLError) as e:  # refused, unreachable, timed out, TLS
                raise _NotSent(f"{url}: connect: {e}") from e
            try:
                conn.request(method, path, body=payload, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as e:
                raise _Ambiguous(f"{url}: {type(e).__name__}: {e}") from e
            hdrs = {k.lower(): v for k, v in resp.getheaders()}
        finally:
            conn.close()
        body: Any = None
        if data:
            try:
                body = json.loads(data)
            except ValueError:
                body = data.decode("utf-8", "replace")
        return Response(resp.status, body, hdrs)

    # ---- the retry loop --------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Optional[Mapping[str, Any]] = None,
        idempotent: bool,
        timeout: Optional[float] = None,
        deadline: Optional[float] = None,
    ) -> Response:
        """Sends the request until a final answer or ``deadline`` (monotonic).

        Returns the 2xx response; raises :class:`ApiError` (a subclass by
        status) for an error answer, :class:`OutcomeUnknown` for a
        non-idempotent request whose outcome cannot be known,
        :class:`ConnectionFailed` when no replica answered in time.
        """
        if deadline is None:
            deadline = time.monotonic() + self.retry_for
        per_try = timeout if timeout is not None else self.timeout
        payload = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        if query:
            q = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in query.items()}
            path += "?" + urllib.parse.urlencode({k: v for k, v in q.items() if v is not None})
        request_id = f"py-{random.getrandbits(64):016x}"
        n = len(self.endpoints)
        with self._lock:
            idx = self._current
        override: Optional[str] = None  # a redirect's Location or a leader hint
        redirects = tries = 0
        backoff = 0.05
        last: Optional[BaseException] = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if isinstance(last, ApiError):
                    raise last
                raise ConnectionFailed(
                    f"{method} {path}: no replica answered in time (last: {last})"
                ) from last
            url = override or self.endpoints[idx] + path
            override = None
            try:
                resp = self._once(url, method, payload, min(per_try, remaining), request_id)
            except _NotSent as e:
                last = e
                self._mark_down(url)
            except _Ambiguous as e:
                self._mark_down(url)
                if not idempotent:
                    raise OutcomeUnknown(f"{method} {path}: outcome unknown ({e})") from e
                last = e
            else:
                status = resp.status
                location = resp.headers.get("location")
                if status in (307, 308) and location and redirects < _MAX_REDIRECTS:
                    target = urllib.parse.urljoin(url, location)
                    if not self._is_down(target):
                        redirects += 1
                        override = target
                        continue
                if status == 429:
                    time.sleep(min(_retry_after(resp, 1.0), max(0.0, deadline - time.monotonic())))
                    continue
                if 200 <= status < 300:
                    self._remember(url)
                    return resp
                err = _error_of(resp)
                if status in (307, 308):
                    # Redirected in circles (a leader this replica knows of
                    # but that is gone): as not_leader, the next replica.
                    last = Unavailable(status, "not_leader", err.message, err.details)
                elif status == 503 and (err.code in _MOVE_ON or err.code == "outcome_unknown"):
                    if err.code == "outcome_unknown" and not idempotent:
                        raise OutcomeUnknown(f"{method} {path}: {err.message}") from err
                    last = err
                    leader = err.details.get("leader")
                    if (
                        isinstance(leader, str)
                        and leader.startswith("http")
                        and leader != _base_of(url)
                        and not self._is_down(leader)
                        and redirects < _MAX_REDIRECTS
                    ):
                        redirects += 1
                        override = leader.rstrip("/") + path
                        continue
                else:
                    raise err
            # On to the next endpoint (the next request starts there too, so
            # a replica that hangs costs one timeout, not one per request);
            # a pause after each full round.
            self._skip(idx)
            idx = (idx + 1) % n
            tries += 1
            if tries % n == 0:
                left = max(0.0, deadline - time.monotonic())
                pause = min(backoff * (0.5 + random.random()), left)
                log.debug("recoveryd: %s %s: retrying in %.3fs (%s)", method, path, pause, last)
                time.sleep(pause)
                backoff = min(backoff * 2, 1.0)
                redirects = 0

    def _mark_down(self, url: str) -> None:
        with self._lock:
            self._down[_base_of(url)] = time.monotonic() + _DOWN_FOR

    def _is_down(self, url: str) -> bool:
        with self._lock:
            until = self._down.get(_base_of(url))
            return until is not None and time.monotonic() < until

    def _skip(self, idx: int) -> None:
        with self._lock:
            if self._current == idx:
                self._current = (idx + 1) % len(self.endpoints)

    def _remember(self, url: str) -> None:
        base = _base_of(url)
        with self._lock:
            self._down.pop(base, None)
        if base in self.endpoints:
            with self._lock:
                self._current = self.endpoints.index(base)


def _retry_after(resp: Response, default: float) -> float:
    try:
        return max(0.0, float(resp.headers.get("retry-after", default)))
    except ValueError:
        return default


def _error_of(resp: Response) -> ApiError:
    err = resp.body.get("error") if isinstance(resp.body, dict) else None
    rid = resp.headers.get("x-request-id")
    if isinstance(err, dict):
        details = err.get("details")
        return api_error(
            resp.status,
            str(err.get("code", "")),
            str(err.get("message", "")),
            details if isinstance(details, dict) else {},
            rid,
        )
    text = resp.body if isinstance(resp.body, str) else ""
    message = text.strip()[:200] or "no error body"
    return api_error(resp.status, f"http_{resp.status}", message, None, rid)

