"""Real recoveryd processes on loopback for the SDK's tests.

What tests/lib/harness.c does for the C tests: a temporary directory per
replica with config.yaml and data/, two free loopback ports below the
ephemeral range, the daemon started there (output appended to its log,
killed with the test process by PR_SET_PDEATHSIG) and stopped by its PID.
The binary comes from RECOVERYD_BINARY (set by ctest), the plugins from the
build next to it, the policies from the repository.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Dict, List, Optional, Tuple

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
# Slower builds (sanitizers) stretch every wait and the agents' heartbeat
# cadence, as tests/lib/rdt_ctest.h does for the C tests: RD_TEST_TIME_FACTOR,
# else the build's default (RDT_DEFAULT_TIME_FACTOR, set by ctest).
TIME_FACTOR = float(os.environ.get("RD_TEST_TIME_FACTOR")
                    or os.environ.get("RDT_DEFAULT_TIME_FACTOR") or 1)


def binary() -> Optional[str]:
    b = os.environ.get("RECOVERYD_BINARY")
    return b if b and os.access(b, os.X_OK) else None


def _pdeathsig() -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


_taken: set = set()


def free_port() -> int:
    """A free loopback port below the ephemeral range (not handed out before)."""
    low = 32768
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError):
        pass
    for _ in range(500):
        p = random.randrange(20000, low)
        if p not in _taken and _port_free(p):
            _taken.add(p)
            return p
    raise RuntimeError("no free loopback port")


def http_json(method: str, url: str, body: Any = None, timeout: float = 2.0,
              cafile: Optional[str] = None) -> Tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    ctx = ssl.create_default_context(cafile=cafile) if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode("utf-8", "replace")


def wait_for(cond: Callable[[], Any], timeout: float, what: str, step: float = 0.02) -> Any:
    """Polls ``cond`` until it returns something true; fails after ``timeout``."""
    end = time.monotonic() + timeout * TIME_FACTOR
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= end:
            waited = timeout * TIME_FACTOR
            raise AssertionError(f"timed out after {waited:.1f} s waiting for {what}")
        time.sleep(step)


class Engine:
    """One recoveryd process (one replica)."""

    def __init__(self, extra_yaml: str = "", host: str = "127.0.0.1",
                 wrap: Optional[List[str]] = None) -> None:
        self.dir = tempfile.mkdtemp(prefix="rdpy-")
        self.host = host  # its API and raft addresses (a namespace's, with `wrap`)
        self.wrap = wrap or []  # argv prefix it runs under (ip netns exec NS)
        self.data_dir = os.path.join(self.dir, "data")
        os.mkdir(self.data_dir)
        self.port = free_port()
        self.raft_port = free_port()
        self.raft_advertised = self.raft_port  # what peers dial (a proxy's port: raft_bind)
        self.url = f"http://{host}:{self.port}"
        self.log_path = os.path.join(self.dir, "recoveryd.log")
        self.config_path = os.path.join(self.dir, "config.yaml")
        self.extra_yaml = extra_yaml
        self.cluster_yaml = ""
        self.proc: Optional[subprocess.Popen] = None
        self.cafile: Optional[str] = None
        self.killed = False  # by the test (kill -9): its exit says nothing
        self.env: Dict[str, str] = {}  # added to the environment it starts in

    def use_tls(self) -> None:
        """A self-signed certificate for 127.0.0.1 (openssl): the API speaks
        TLS, self.cafile verifies it."""
        cert, key = os.path.join(self.dir, "cert.pem"), os.path.join(self.dir, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/CN=127.0.0.1", "-addext",
                        "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        self.extra_yaml += f"server:\n  tls:\n    cert: {cert}\n    key: {key}\n"
        self.cafile = cert
        self.url = f"https://127.0.0.1:{self.port}"

    def write_config(self) -> None:
        with open(self.config_path, "w") as f:
            f.write("# Written by api/python/tests/engine.py\n")
            f.write(f"cluster:\n  raft_address: {self.host}:{self.raft_advertised}\n")
            if self.raft_advertised != self.raft_port:
                f.write(f"  raft_bind: {self.host}:{self.raft_port}\n")
            f.write(self.cluster_yaml)
            f.write("logging:\n  level: info\n")
            extra = self.extra_yaml
            if TIME_FACTOR != 1:
                hb = f"    heartbeat_interval: {int(500 * TIME_FACTOR)}ms\n"
                if "fault_tolerance:\n  detection:\n" in extra:
                    extra = extra.replace("fault_tolerance:\n  detection:\n",
                                          "fault_tolerance:\n  detection:\n" + hb, 1)
                elif "fault_tolerance:\n" in extra:  # another section of it: one key only
                    extra = extra.replace("fault_tolerance:\n",
                                          "fault_tolerance:\n  detection:\n" + hb, 1)
                else:
                    extra = "fault_tolerance:\n  detection:\n" + hb + extra
            f.write(extra)

    def start(self) -> None:
        b = binary()
        assert b, "RECOVERYD_BINARY is not set"
        self.write_config()
        plugins = os.path.join(os.path.dirname(os.path.dirname(b)), "plugins")
        argv = [*self.wrap, b, "--config", self.config_path, "--listen", f"{self.host}:{self.port}",
                "--data-dir", self.data_dir, "--plugins-dir", plugins,
                "--policies-dir", os.path.join(REPO, "policies")]
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(argv, cwd=self.dir, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log, preexec_fn=_pdeathsig,
                                         env={**os.environ, **self.env} if self.env else None)
        finally:
            log.close()
        wait_for(self.healthy, 15, f"{self.url}/health")

    def healthy(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"recoveryd exited: {self.log_tail()}")
        try:
            return http_json("GET", self.url + "/health", timeout=0.5, cafile=self.cafile)[0] == 200
        except OSError:
            return False

    def ready(self) -> bool:
        try:
            return http_json("GET", self.url + "/ready", timeout=0.5, cafile=self.cafile)[0] == 200
        except OSError:
            return False

    def role(self) -> Optional[str]:
        try:
            code, body = http_json("GET", self.url + "/health", timeout=0.5)
        except OSError:
            return None
        return body.get("role") if code == 200 and isinstance(body, dict) else None

    def signal(self, sig: int) -> None:
        assert self.proc is not None and self.proc.poll() is None
        os.kill(self.proc.pid, sig)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.killed = True

    def stop(self) -> Optional[int]:
        """SIGTERM (after SIGCONT, in case a test stopped it), then SIGKILL."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        os.kill(self.proc.pid, signal.SIGCONT)
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            return None

    def stop_and_check(self) -> Optional[str]:
        """Stops it (SIGTERM); what went wrong, as tests/lib/harness.c's
        rdt_proc_cleanup() judges: a non-zero exit at SIGTERM, or a
        sanitizer's report in its log. None when it ended cleanly."""
        rc = self.stop()
        try:
            with open(self.log_path, errors="replace") as f:
                log = f.read()
        except OSError:
            log = ""
        for mark in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", ": runtime error: "):
            if mark in log:
                return f"{self.url}: {mark.strip(': ')} in {self.log_path}"
        if not self.killed and rc != 0:
            return f"{self.url}: exit code {rc} at SIGTERM ({self.log_path})"
        return None

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def cleanup(self, keep: bool = False) -> None:
        self.stop()
        if keep or os.environ.get("RDT_KEEP"):
            print(f"kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


class Cluster:
    """``n`` replicas that bootstrap one raft cluster (ids 1..n).

    ``raft_via(i, port)``, when given, returns the port replica i's peers
    dial instead of its raft port (a proxy in front of it: cluster.raft_bind)."""

    def __init__(self, n: int, extra_yaml: str = "", cluster_extra: str = "",
                 raft_via: Optional[Callable[[int, int], int]] = None,
                 hosts: Optional[List[str]] = None,
                 wraps: Optional[List[List[str]]] = None) -> None:
        self.engines = [Engine(extra_yaml, hosts[k] if hosts else "127.0.0.1",
                               wraps[k] if wraps else None) for k in range(n)]
        if raft_via is not None:
            for k, e in enumerate(self.engines):
                e.raft_advertised = raft_via(k, e.raft_port)
        peers = "".join(
            f"    - {{id: {k + 1}, address: {e.host}:{e.raft_advertised}, api_url: {e.url}}}\n"
            for k, e in enumerate(self.engines))
        for i, e in enumerate(self.engines):
            e.cluster_yaml = f"  replica_id: {i + 1}\n{cluster_extra}  peers:\n{peers}"

    @property
    def urls(self) -> List[str]:
        return [e.url for e in self.engines]

    def start(self) -> None:
        for e in self.engines:
            e.start()
        wait_for(lambda: all(e.ready() for e in self.engines), 20, "every replica ready")

    def leader(self, timeout: float = 10) -> Engine:
        def find() -> Optional[Engine]:
            for e in self.engines:
                if e.proc is not None and e.proc.poll() is None and e.role() == "leader":
                    return e
            return None

        return wait_for(find, timeout, "a leader")

    def cleanup(self, keep: bool = False) -> None:
        for e in self.engines:
            e.cleanup(keep)


class Proxy:
    """A TCP proxy on loopback whose link can be cut: a partition of one
    client from the engine that leaves the engine and everyone else alone.

    Cut, it closes what it carries and holds new connections open without
    an answer (a peer that vanished: clients learn of it only by timing
    out). ``requests`` records (time, first line) of every request carried.
    """

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cut = False
        self.requests: List[Tuple[float, str]] = []
        self.lost: List[Tuple[float, str]] = []  # answers lost by content (drop_answers)
        # [substring of a request line, answers left to lose, substring the
        # answer must hold or None]: drop_answers()
        self._drops: List[List[Any]] = []
        self._lock = threading.Lock()
        self._socks: List[socket.socket] = []
        self._srv = socket.socket()
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", self.port))
        self._srv.listen(64)
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _track(self, s: socket.socket) -> None:
        with self._lock:
            self._socks.append(s)

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
            except OSError:
                c.close()
                continue
            self._track(u)
            # This connection's last request line, and whether its answer is lost.
            conn: Dict[str, Any] = {"line": "", "lose": False}
            threading.Thread(target=self._pipe, args=(c, u, True, conn), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c, False, conn), daemon=True).start()

    def drop_answers(self, what: str, n: int = 1, containing: Optional[str] = None) -> None:
        """Loses the answers to the next ``n`` requests whose first line
        contains ``what`` (and, with ``containing``, whose answer holds that
        text within one read): the request reaches the engine (and takes
        effect), the client's connection is closed before the answer (or the
        rest of it) comes back."""
        with self._lock:
            self._drops.append([what, n, containing])

    def _loses(self, line: str, answer: Optional[bytes]) -> bool:
        """Whether the answer to ``line`` is lost: decided at the request
        (answer None) by the drops without ``containing``, at each read of
        the answer by the others."""
        with self._lock:
            for d in self._drops:
                if d[1] <= 0 or d[0] not in line or (d[2] is None) != (answer is None):
                    continue
                if answer is None or d[2].encode() in answer:
                    d[1] -= 1
                    return True
        return False

    def _pipe(self, src: socket.socket, dst: socket.socket, upstream: bool,
              conn: Dict[str, Any]) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data or self.cut:
                    break
                if upstream and data[:8].split(b" ", 1)[0] in (b"GET", b"PUT", b"POST",
                                                                b"DELETE"):
                    line = data.split(b"\r\n", 1)[0].decode("latin-1")
                    self.requests.append((time.monotonic(), line))
                    conn["line"] = line
                    if self._loses(line, None):
                        conn["lose"] = True
                if not upstream and not conn["lose"]:
                    if self._loses(conn["line"], data):
                        conn["lose"] = True
                        self.lost.append((time.monotonic(), conn["line"]))
                if not upstream and conn["lose"]:
                    break  # the answer never reaches the client
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def set_cut(self, cut: bool) -> None:
        self.cut = cut
        if cut:
            with self._lock:
                socks, self._socks = self._socks, []
            for s in socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self) -> None:
        self._closed = True
        self._srv.close()
        self.set_cut(True)


def register_raw(url: str, node_id: str, slots: int = 1) -> Dict[str, Any]:
    code, body = http_json("POST", f"{url}/api/v1/nodes",
                           {"node_id": node_id, "capacity": {"slots": slots}})
    assert code == 201, body
    return body

