"""A user-space TCP proxy on loopback that delays, loses and cuts traffic.

No netem here (no root, no qdisc): faults on a link between a client and a
server are injected by putting this proxy in between. Standard library
only, one thread per direction of each connection. The one proxy of the
SDK's tests (engine.Proxy) and of the chaos suite (tests/chaos: each client's
links to the replicas, the links between replicas).

- ``delay``: seconds added before each chunk is passed on (both ways).
- ``loss``: probability that a connection is reset at a chunk (TCP hides
  packet loss behind retransmission; what a client sees of a bad link is a
  connection that dies mid-request: sent, and no answer).
- ``cut``: what it carries is closed and new connections are held open and
  never answered (a peer that vanished: clients learn it by timing out).
- ``rewrite``: byte strings replaced in answers, e.g. a replica's URL in a
  307 ``Location`` by this client's proxy for that replica, so redirects
  stay on the faulty link. Keep both sides the same length (Content-Length).
- ``blocked``: a cut of its own, set and healed by partitions apart from the
  faults above (a link cut by a fault and a partition stays cut until both
  are over).
- ``requests``: (monotonic time, first line) of every HTTP request carried;
  ``drop_answers(what, n)`` loses the answers to the next ``n`` requests
  whose first line contains ``what`` (the request takes effect, the client
  never hears of it).

``RaftProxy`` sits in front of one replica's raft port (its peers dial the
proxy: cluster.raft_bind) and tells its callers apart by libraft's TCP
handshake (protocol, sender id, address), so each directed link i -> j
(raft messages i sends j: libraft sends only on its own outgoing
connections) has faults of its own: one-way cuts, a replica's links slowed.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

_METHODS = (b"GET", b"PUT", b"POST", b"DELETE")


class Link:
    """The faults of one link (one source through one proxy)."""

    def __init__(self, seed: int = 0) -> None:
        self.delay = 0.0
        self.loss = 0.0
        self.cut = False
        self.blocked = False  # by a partition
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._socks: List[socket.socket] = []

    @property
    def down(self) -> bool:
        return self.cut or self.blocked

    def set(self, delay: Optional[float] = None, loss: Optional[float] = None,
            cut: Optional[bool] = None, blocked: Optional[bool] = None) -> None:
        """Changes the link's faults; a cut closes what the link carries."""
        was = self.down
        if delay is not None:
            self.delay = delay
        if loss is not None:
            self.loss = loss
        if cut is not None:
            self.cut = cut
        if blocked is not None:
            self.blocked = blocked
        if self.down or was:
            # Down: what it carries dies. Up again: the connections held
            # unanswered die too, so their clients (a raft peer has no
            # timeout of its own) connect again.
            self.close_all()

    def heal(self) -> None:
        self.set(delay=0.0, loss=0.0, cut=False)

    def track(self, s: socket.socket) -> None:
        with self._lock:
            self._socks.append(s)

    def close_all(self) -> None:
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def lose(self) -> bool:
        if self.loss <= 0:
            return False
        with self._lock:
            return self._rng.random() < self.loss


class NetProxy:
    """A proxy to ``target`` whose connections all share one Link."""

    def __init__(self, target: Tuple[str, int], port: int = 0, seed: int = 0) -> None:
        self.target = target
        self.link = Link(seed)
        self.rewrite: Dict[bytes, bytes] = {}
        self.seed = seed
        self.requests: List[Tuple[float, str]] = []
        self.lost: List[Tuple[float, str]] = []  # answers lost by content (drop_answers)
        # [substring of a request line, answers left to lose, substring the
        # answer must hold or None]: drop_answers()
        self._drops: List[List[Any]] = []
        self._drops_lock = threading.Lock()
        self._line: Dict[int, str] = {}  # a connection's last request line, by its lose flag
        self._srv = socket.socket()
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", port))
        self._srv.listen(128)
        self.port: int = self._srv.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._closed = False
        threading.Thread(target=self._accept, name=f"netproxy-{self.port}", daemon=True).start()

    def set(self, **kw: object) -> None:
        self.link.set(**kw)  # type: ignore[arg-type]

    def heal(self) -> None:
        self.link.heal()

    def set_cut(self, cut: bool) -> None:
        """Cut: what it carries is closed, new connections are held open
        unanswered; uncut: those die too and clients connect again."""
        self.link.set(cut=cut)

    def drop_answers(self, what: str, n: int = 1, containing: Optional[str] = None) -> None:
        """Loses the answers to the next ``n`` requests whose first line
        contains ``what`` (and, with ``containing``, whose answer holds that
        text within one read): the request reaches the server (and takes
        effect), the client's connection is closed before the answer (or the
        rest of it) comes back."""
        with self._drops_lock:
            self._drops.append([what, n, containing])

    def _loses(self, line: str, answer: Optional[bytes] = None) -> bool:
        """Whether the answer to ``line`` is lost: decided at the request
        (answer None) by the drops without ``containing``, at each read of
        the answer by the others."""
        with self._drops_lock:
            for d in self._drops:
                if d[1] <= 0 or d[0] not in line or (d[2] is None) != (answer is None):
                    continue
                if answer is None or d[2].encode() in answer:
                    d[1] -= 1
                    return True
        return False

    def _note_request(self, data: bytes, lose: List[bool]) -> None:
        """Records a request that starts in this chunk; marks its answer
        lost when drop_answers() asked for it."""
        if data[:8].split(b" ", 1)[0] not in _METHODS:
            return
        line = data.split(b"\r\n", 1)[0].decode("latin-1")
        self.requests.append((time.monotonic(), line))
        self._line[id(lose)] = line
        if self._loses(line):
            lose[0] = True

    def close(self) -> None:
        self._closed = True
        self._srv.close()
        for ln in self.links():
            ln.close_all()

    def links(self) -> List[Link]:
        return [self.link]

    def classify(self, c: socket.socket) -> Link:
        """The link a new connection belongs to (RaftProxy: by its sender)."""
        return self.link

    def _accept(self) -> None:
        while not self._closed:
            try:
                c, _ = self._srv.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c: socket.socket) -> None:
        link = self.classify(c)
        link.track(c)
        if link.down:
            return  # held open, never answered (closed when the link heals)
        try:
            u = socket.create_connection(self.target, timeout=2)
            u.settimeout(None)
        except OSError:
            c.close()
            return
        link.track(u)
        lose = [False]  # this connection's next answer is lost
        threading.Thread(target=self._pipe, args=(link, c, u, False, lose), daemon=True).start()
        self._pipe(link, u, c, True, lose)
        self._line.pop(id(lose), None)

    def _pipe(self, link: Link, src: socket.socket, dst: socket.socket, answers: bool,
              lose: List[bool]) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data or link.down:
                    break
                if not answers:
                    self._note_request(data, lose)
                elif not lose[0]:
                    line = self._line.get(id(lose), "")
                    if self._loses(line, data):
                        lose[0] = True
                        self.lost.append((time.monotonic(), line))
                if answers and lose[0]:
                    break  # the answer never reaches the client
                if link.delay > 0:
                    time.sleep(link.delay)
                if link.down or link.lose():
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


class RaftProxy(NetProxy):
    """In front of one replica's raft port: one Link per sending replica,
    told apart by libraft's handshake (uint64 LE protocol, sender id,
    address length, address), which the proxy peeks at and passes on."""

    def __init__(self, target: Tuple[str, int], seed: int = 0) -> None:
        self.by_source: Dict[int, Link] = {}
        self._mu = threading.Lock()
        super().__init__(target, seed=seed)

    def source(self, sender: int) -> Link:
        with self._mu:
            if sender not in self.by_source:
                self.by_source[sender] = Link(self.seed * 100 + sender)
            return self.by_source[sender]

    def links(self) -> List[Link]:
        with self._mu:
            return [self.link] + list(self.by_source.values())

    def classify(self, c: socket.socket) -> Link:
        c.settimeout(2.0)
        try:
            head = c.recv(16, socket.MSG_PEEK | socket.MSG_WAITALL)
        except OSError:
            head = b""
        c.settimeout(None)
        if len(head) < 16:
            return self.link  # not a raft peer's handshake: the shared link
        _, sender = struct.unpack("<QQ", head)
        return self.source(sender)


class Links:
    """One client's links to every replica: a proxy per replica whose
    answers point redirects at this client's other proxies."""

    def __init__(self, replica_ports: List[int], seed: int = 0,
                 hosts: Optional[List[str]] = None) -> None:
        self.hosts = hosts or ["127.0.0.1"] * len(replica_ports)
        self.proxies = [NetProxy((self.hosts[i], p), seed=seed * 1000 + i)
                        for i, p in enumerate(replica_ports)]
        self.set_ports(replica_ports)

    def set_ports(self, replica_ports: List[int]) -> None:
        rw = {}
        for h, p, px in zip(self.hosts, replica_ports, self.proxies):
            old, new = f"{h}:{p}".encode(), f"127.0.0.1:{px.port}".encode()
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

    def block(self, replica: int, blocked: bool) -> None:
        """This client's link to one replica, cut by a partition or not."""
        self.proxies[replica].set(blocked=blocked)

    def close(self) -> None:
        for px in self.proxies:
            px.close()


class RaftNet:
    """The links between replicas: a RaftProxy in front of each replica's
    raft port (``port(i, real)`` is Cluster's ``raft_via``); ``set(i, j)``
    acts on what replica i sends replica j (indices from 0; raft ids are
    index + 1)."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n = n
        self.seed = seed
        self.proxies: List[Optional[RaftProxy]] = [None] * n

    def port(self, i: int, real: int) -> int:
        px = RaftProxy(("127.0.0.1", real), seed=self.seed * 100 + i)
        self.proxies[i] = px
        return px.port

    def link(self, src: int, dst: int) -> Link:
        px = self.proxies[dst]
        assert px is not None, "RaftNet.port() was not called for every replica"
        return px.source(src + 1)

    def set(self, src: int, dst: int, **kw: object) -> None:
        self.link(src, dst).set(**kw)  # type: ignore[arg-type]

    def set_replica(self, k: int, **kw: object) -> None:
        """Every link from and to replica k."""
        for j in range(self.n):
            if j != k:
                self.set(k, j, **kw)
                self.set(j, k, **kw)

    def heal(self) -> None:
        for px in self.proxies:
            for ln in px.links() if px else []:
                ln.set(delay=0.0, loss=0.0, cut=False, blocked=False)

    def close(self) -> None:
        for px in self.proxies:
            if px is not None:
                px.close()
