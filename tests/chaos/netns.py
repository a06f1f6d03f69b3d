"""Replicas in network namespaces (``run.py --net netns``): partitions the
kernel's own TCP sees.

Each replica runs in a namespace ``rdt-c<tag>-<i>`` with one end of a veth
pair; the other ends join a bridge ``rdt-cb<tag>`` in the host namespace,
which has the address 10.66.<tag>.254 (agents and the runner reach the
replicas through it). Replica i has 10.66.<tag>.<i+1>: the same length as
127.0.0.1, so the agents' proxies can rewrite redirects in place.

A cut link i -> j is a route in i's namespace sending j's address to a
neighbour that does not exist (10.66.<tag>.200): packets on established
connections vanish without an error (TCP retransmits into the void, as
behind a dead switch) and a new connection fails after the kernel's ARP
attempts (about 3 s, EHOSTUNREACH). This machine's kernel has no queueing
disciplines (no netem, no tc filters) and no iptables: delay, loss and
one-way cuts at the packet level stay the proxies' (``--net proxy``), and a
route cut in one direction stops TCP both ways (no acknowledgements come
back). Needs root; ``NetnsNet.unavailable()`` says why not.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import List, Optional, Set, Tuple

from netproxy import RaftNet

DEAD_NEIGHBOUR = 200


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


class NetnsNet:
    """``n`` replica namespaces on one bridge; ``set(i, j, blocked=)`` cuts
    or restores what replica i sends replica j (indices from 0)."""

    def __init__(self, n: int, tag: int) -> None:
        assert 1 <= n <= 9 and 0 <= tag <= 9, "addresses must keep 127.0.0.1's length"
        self.n = n
        self.tag = tag
        self.bridge = f"rdt-cb{tag}"
        self.cut: Set[Tuple[int, int]] = set()

    @staticmethod
    def unavailable() -> Optional[str]:
        """Why namespaces cannot be used here, or None."""
        if os.geteuid() != 0:
            return "not root"
        if shutil.which("ip") is None:
            return "no ip(8) (Debian's iproute2)"
        probe = "rdt-cprobe"
        r = _ip("netns", "add", probe, check=False)
        if r.returncode != 0:
            return f"ip netns add failed: {r.stderr.strip()}"
        _ip("netns", "del", probe, check=False)
        return None

    def ns(self, i: int) -> str:
        return f"rdt-c{self.tag}-{i}"

    def host(self, i: int) -> str:
        return f"10.66.{self.tag}.{i + 1}"

    def wrap(self, i: int) -> List[str]:
        """The argv prefix that runs a command in replica i's namespace."""
        return ["ip", "netns", "exec", self.ns(i)]

    def setup(self) -> None:
        self.close()  # what a killed earlier run with this tag left behind
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    def _setup(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"10.66.{self.tag}.254/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i in range(self.n):
            ns, outer, inner = self.ns(i), f"rdt-c{self.tag}h{i}", f"rdt-c{self.tag}n{i}"
            _ip("netns", "add", ns)
            _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
            _ip("link", "set", inner, "netns", ns)
            _ip("link", "set", outer, "master", self.bridge, "up")
            _ip("-n", ns, "addr", "add", f"{self.host(i)}/24", "dev", inner)
            _ip("-n", ns, "link", "set", inner, "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    def set(self, src: int, dst: int, blocked: Optional[bool] = None, **kw: object) -> None:
        if kw and any(kw.values()):
            raise ValueError(f"--net netns cannot {sorted(kw)} (no queueing disciplines here)")
        if blocked is None or blocked == ((src, dst) in self.cut):
            return
        verb = "add" if blocked else "del"
        _ip("-n", self.ns(src), "route", verb, f"{self.host(dst)}/32", "via",
            f"10.66.{self.tag}.{DEAD_NEIGHBOUR}")
        (self.cut.add if blocked else self.cut.discard)((src, dst))

    set_replica = RaftNet.set_replica  # every link from and to replica k

    def heal(self) -> None:
        for src, dst in sorted(self.cut):
            self.set(src, dst, blocked=False)

    def close(self) -> None:
        """Removes every namespace and link of this tag (also those of an
        earlier run that was killed before its own close)."""
        for i in range(9):
            _ip("netns", "del", self.ns(i), check=False)
            _ip("link", "del", f"rdt-c{self.tag}h{i}", check=False)
        _ip("link", "del", self.bridge, check=False)
        self.cut.clear()
