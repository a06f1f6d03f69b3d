#!/usr/bin/env python3
"""netns.NetnsNet on real namespaces: replicas reach each other and the
host through the bridge; a cut link carries nothing (an established
connection's data is lost, a new connection fails) until the heal; close()
leaves no namespace or link behind. Skipped (77) without root/namespaces."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "api", "python", "tests"))  # netns

from netns import NetnsNet  # noqa: E402

# Runs in a namespace: listens, answers each line with the line.
ECHO = ("import socket,threading\n"
        "s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
        "s.bind(('{host}',7000));s.listen()\n"
        "def serve(c):\n"
        "  f=c.makefile('rwb',0)\n"
        "  for line in f: f.write(line)\n"
        "while True:\n"
        "  c,_=s.accept();threading.Thread(target=serve,args=(c,),daemon=True).start()\n")

# Runs in a namespace: connects to host:7000 and says whether an echo came
# back within the timeout (prints ok / the error).
PROBE = ("import socket,sys\n"
         "try:\n"
         "  c=socket.create_connection(('{host}',7000),timeout={t})\n"
         "  c.settimeout({t});c.sendall(b'x\\n');print('ok' if c.recv(2)==b'x\\n' else 'bad')\n"
         "except OSError as e: print(type(e).__name__)\n")


def probe(net: NetnsNet, src: int, dst: int, t: float = 4.0) -> str:
    out = subprocess.run([*net.wrap(src), sys.executable, "-c",
                          PROBE.format(host=net.host(dst), t=t)],
                         capture_output=True, text=True, timeout=t * 3)
    return out.stdout.strip()


def leftovers(tag: int) -> str:
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return "\n".join(line for line in (ns + links).splitlines()
                     if f"rdt-c{tag}" in line or f"rdt-cb{tag}" in line)


def main() -> int:
    why = NetnsNet.unavailable()
    if why:
        print(f"test_netns: skipped: {why}")
        return 77
    tag = 8  # not run.py's 7: this test may run beside a chaos run
    net = NetnsNet(3, tag)
    echo = None
    try:
        net.setup()
        echo = subprocess.Popen([*net.wrap(1), sys.executable, "-c",
                                 ECHO.format(host=net.host(1))])
        # From the host namespace, over the bridge.
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((net.host(1), 7000), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "replica 1's listener never answered"
                time.sleep(0.05)
        assert probe(net, 0, 1) == "ok", "0 -> 1 before any cut"
        assert probe(net, 2, 1) == "ok", "2 -> 1 before any cut"

        # An established connection 0 -> 1 loses its data once cut.
        est = subprocess.Popen(
            [*net.wrap(0), sys.executable, "-c",
             "import socket,sys\n"
             f"c=socket.create_connection(('{net.host(1)}',7000),timeout=2)\n"
             "f=c.makefile('rwb',0);f.write(b'a\\n');assert f.readline()==b'a\\n'\n"
             "print('up',flush=True);sys.stdin.readline()\n"
             "try:\n  f.write(b'b\\n');print('echo' if f.readline()==b'b\\n' else 'none')\n"
             "except OSError as e: print(type(e).__name__)\n"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert est.stdout is not None and est.stdin is not None
        assert est.stdout.readline().strip() == "up"
        net.set(0, 1, blocked=True)
        est.stdin.write("go\n")
        est.stdin.flush()
        got = est.stdout.readline().strip()
        est.wait(10)
        assert got in ("TimeoutError", "timeout"), f"established 0 -> 1 after the cut: {got}"

        assert probe(net, 0, 1, 2.0) != "ok", "a new connection 0 -> 1 across the cut"
        assert probe(net, 2, 1) == "ok", "2 -> 1 must not be cut"
        net.set_replica(2, blocked=True)
        assert probe(net, 2, 1, 2.0) != "ok" and probe(net, 1, 2, 2.0) != "ok", "replica 2 isolated"
        net.heal()
        assert not net.cut
        for src, dst in ((0, 1), (2, 1)):
            assert probe(net, src, dst) == "ok", f"{src} -> {dst} after the heal"
        try:
            net.set(0, 1, delay=0.1)
            raise AssertionError("delay accepted on namespaces")
        except ValueError as e:
            assert "no queueing disciplines" in str(e), e
    finally:
        if echo is not None:
            echo.kill()
            echo.wait()
        net.close()
    left = leftovers(tag)
    assert not left, f"close() left behind:\n{left}"
    print("test_netns: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
