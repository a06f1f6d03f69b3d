"""A user-space TCP proxy on loopback that delays, loses and cuts traffic.

No netem here (no root, no qdisc): faults on a link between a client and a
server are injected by putting this proxy in between. Standard library
only, one thread per direction of each connection.

- ``delay``: seconds added before each chunk is passed on (both ways).
- ``loss``: probability that a connection is reset at a chunk (TCP hides
  packet loss behind retransmission; what a client sees of a bad link is a
  connection that dies mid-request: sent, and no answer).
- ``cut``: what it carries is closed and new connections are held open and
  never answered (a peer that vanished: clients learn it by timing out).
- ``rewrite``: byte strings replaced in answers, e.g. a replica's URL in a
  307 ``Location`` by this client's proxy for that replica, so redirects
  stay on the faulty link. Keep both sides the same length (Content-Length).
"""

from __future__ import annotations

import random
import socket
import threading
import time
from typing import Dict, List, Optional, Tuple


class NetProxy:
    def __init__(self, target: Tuple[str, int], port: int = 0, seed: int = 0) -> None:
        self.target = target
        self.delay = 0.0
        self.loss = 0.0
        self.cut = False
        self.rewrite: Dict[bytes, bytes] = {}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._socks: List[socket.socket] = []
        self._srv = socket.socket()
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", port))
        self._srv.listen(128)
        self.port: int = self._srv.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closed = False
        threading.Thread(target=self._accept, name=f"netproxy-{self.port}", daemon=True).start()

    def set(self, delay: Optional[float] = None, loss: Optional[float] = None,
            cut: Optional[bool] = None) -> None:
        """Changes the link's faults; a cut closes what the link carries."""
        if delay is not None:
            self.delay = delay
        if loss is not None:
            self.loss = loss
        if cut is not None:
            self.cut = cut
            if cut:
                self._close_all()

    def heal(self) -> None:
        self.set(delay=0.0, loss=0.0, cut=False)

    def close(self) -> None:
        self._closed = True
        self._srv.close()
        self._close_all()

    def _close_all(self) -> None:
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _track(self, s: socket.socket) -> None:
        with self._lock:
            self._socks.append(s)

    def _lose(self) -> bool:
        if self.loss <= 0:
            return False
        with self._lock:
            return self._rng.random() < self.loss

    def _accept(self) -> None:
        while not self._closed:
            try:
                c, _ = self._srv.accept()
            except OSError:
                return
            self._track(c)
            if self.cut:
                continue  # held open, never answered
            try:
                u = socket.create_connection(self.target, timeout=2)
                u.settimeout(None)
            except OSError:
                c.close()
                continue
            self._track(u)
            threading.Thread(target=self._pipe, args=(c, u, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c, True), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, answers: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data or self.cut:
                    break
                if self.delay > 0:
                    time.sleep(self.delay)
                if self.cut or self._lose():
                    break
                if answers:
                    for old, new in self.rewrite.items():
                        data = data.replace(old, new)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Links:
    """One client's links to every replica: a proxy per replica whose
    answers point redirects at this client's other proxies."""

    def __init__(self, replica_ports: List[int], seed: int = 0) -> None:
        self.proxies = [NetProxy(("127.0.0.1", p), seed=seed * 1000 + i)
                        for i, p in enumerate(replica_ports)]
        self.set_ports(replica_ports)

    def set_ports(self, replica_ports: List[int]) -> None:
        rw = {}
        for p, px in zip(replica_ports, self.proxies):
            old, new = f"127.0.0.1:{p}".encode(), f"127.0.0.1:{px.port}".encode()
            if len(old) == len(new):
                rw[old] = new
        for px in self.proxies:
            px.rewrite = rw

    @property
    def urls(self) -> List[str]:
        return [px.url for px in self.proxies]

    def set(self, **kw: object) -> None:
        for px in self.proxies:
            px.set(**kw)  # type: ignore[arg-type]

    def heal(self) -> None:
        for px in self.proxies:
            px.heal()

    def close(self) -> None:
        for px in self.proxies:
            px.close()
