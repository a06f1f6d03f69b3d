"""A scripted stand-in for the engine's REST API, for the SDK's behaviour on
answers a real engine gives only in rare moments (lost leadership mid
proposal, a lost answer, revocations naming attempts).

``FakeEngine.route(method, path_prefix, fn)``: ``fn(body) -> (status, json)``,
or ``None`` to drop the connection without an answer. Every request is
recorded in ``calls`` as (method, path, body). ``set_down(True)`` closes
the listening socket (connections are refused) until ``set_down(False)``.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, List, Optional, Tuple

Answer = Optional[Tuple[int, Any]]


class FakeEngine:
    def __init__(self) -> None:
        self.calls: List[Tuple[str, str, Any]] = []
        self.routes: List[Tuple[str, str, Callable[[Any], Answer]]] = []
        self.lock = threading.Lock()
        fake = self
        self._down = False

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                body = json.loads(raw) if raw else None
                with fake.lock:
                    fake.calls.append((self.command, self.path, body))
                    fn = next((f for m, p, f in reversed(fake.routes)
                               if m == self.command and self.path.startswith(p)), None)
                answer = fn(body) if fn else (404, {"error": {"code": "not_found",
                                                              "message": self.path,
                                                              "details": {}}})
                if answer is None:
                    self.close_connection = True
                    self.connection.close()
                    return
                status, payload = answer
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        self._handler = Handler
        self._serve(0)
        self.url = f"http://127.0.0.1:{self.port}"

    def _serve(self, port: int) -> None:
        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def set_down(self, down: bool) -> None:
        """Down: nothing listens on the port any more (refused); up: again."""
        if down == self._down:
            return
        self._down = down
        if down:
            self.server.shutdown()
            self.server.server_close()
        else:
            self._serve(self.port)

    def route(self, method: str, prefix: str, fn: Callable[[Any], Answer]) -> None:
        with self.lock:
            self.routes.append((method, prefix, fn))

    def count(self, method: str, prefix: str) -> int:
        with self.lock:
            return sum(1 for m, p, _ in self.calls if m == method and p.startswith(prefix))

    def close(self) -> None:
        if not self._down:
            self.server.shutdown()
            self.server.server_close()


def error(status: int, code: str, **details: Any) -> Tuple[int, Any]:
    return status, {"error": {"code": code, "message": code, "details": details}}
