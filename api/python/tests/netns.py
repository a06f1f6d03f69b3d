"""Network namespaces for partition tests: the kernel's own TCP sees the cut.

``Netns``: one namespace joined to the host by a veth pair (the SDK's
partition test: one agent behind it).

    ns = Netns()           # rdt-<pid>-<n>: the host side gets 10.231.X.Y/30 (.host),
    ns.create()            # the namespace side the next address
    ns.popen([...])        # a process inside (ip netns exec)
    ns.cut(); ns.heal()    # the host side of the link down / up
    ns.remove()            # the namespace and the link (always: finally)

Names carry the ``rdt-`` prefix and the test's PID, so they never clash with
another test's; ``sweep()`` removes those of test processes that are gone
(killed by ctest's timeout before they could clean up).

``NetnsNet``: replicas in namespaces on a bridge (``tests/chaos/run.py --net
netns``). Each replica runs in a namespace ``rdt-c<tag>-<i>`` with one end of
a veth pair; the other ends join a bridge ``rdt-cb<tag>`` in the host
namespace, which has the address 10.66.<tag>.254 (agents and the runner
reach the replicas through it). Replica i has 10.66.<tag>.<i+1>: the same
length as 127.0.0.1, so the agents' proxies can rewrite redirects in place.
A cut link i -> j is a route in i's namespace sending j's address to a
neighbour that does not exist (10.66.<tag>.200): packets on established
connections vanish without an error (TCP retransmits into the void, as
behind a dead switch) and a new connection fails after the kernel's ARP
attempts (about 3 s, EHOSTUNREACH). This machine's kernel has no queueing
disciplines (no netem, no tc filters) and no iptables: delay, loss and
one-way cuts at the packet level stay the proxies' (``--net proxy``), and a
route cut in one direction stops TCP both ways (no acknowledgements come
back).

Both need root and iproute2; ``unavailable()`` says why not (tests skip then).
"""

from __future__ import annotations

import itertools
import os
import random
import re
import shutil
import subprocess
from typing import Any, List, Optional, Sequence, Set, Tuple

from netproxy import RaftNet

_count = itertools.count()
_OURS = re.compile(r"rdt-(\d+)-(\d+)")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def unavailable() -> Optional[str]:
    """Why namespaces cannot be made here, or None."""
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"rdt-probe{os.getpid()}"
    r = _ip("netns", "add", probe, check=False)
    if r.returncode != 0:
        return f"ip netns add failed: {r.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def sweep() -> None:
    """Removes the namespaces (and links) this module made in processes
    that no longer exist."""
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        m = _OURS.fullmatch(line.split(" ", 1)[0])
        if m is None or os.path.exists(f"/proc/{m.group(1)}"):
            continue
        _ip("link", "del", f"{m.group(0)}h", check=False)
        _ip("netns", "del", m.group(0), check=False)


def _veth_ns(ns: str, outer: str, inner: str, addr: str) -> None:
    """Namespace ``ns`` holding the ``inner`` end of a veth pair, up with
    ``addr`` (CIDR) and its loopback; ``outer`` stays here for the caller."""
    _ip("netns", "add", ns)
    _ip("link", "add", outer, "type", "veth", "peer", "name", inner)
    _ip("link", "set", inner, "netns", ns)
    _ip("-n", ns, "addr", "add", addr, "dev", inner)
    _ip("-n", ns, "link", "set", inner, "up")
    _ip("-n", ns, "link", "set", "lo", "up")


def _free_subnet() -> int:
    """A /30 in 10.231.0.0/16 no interface here uses: its first host address."""
    used = _ip("-o", "-4", "addr").stdout
    for _ in range(200):
        base = random.randrange(0, 1 << 16, 4)
        host = f"10.231.{base >> 8}.{(base & 255) + 1}"
        if host not in used:
            return base
    raise RuntimeError("no free /30 in 10.231.0.0/16")


class Netns:
    def __init__(self) -> None:
        self.name = f"rdt-{os.getpid()}-{next(_count)}"
        self.host_if = f"{self.name}h"
        self.ns_if = f"{self.name}n"
        assert len(self.host_if) <= 15, self.host_if  # IFNAMSIZ
        base = _free_subnet()
        self.host = f"10.231.{base >> 8}.{(base & 255) + 1}"
        self.peer = f"10.231.{base >> 8}.{(base & 255) + 2}"
        self._made: List[str] = []

    def create(self) -> None:
        self._made = ["netns", "link"]  # remove() takes away what of them exists
        _veth_ns(self.name, self.host_if, self.ns_if, f"{self.peer}/30")
        _ip("addr", "add", f"{self.host}/30", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")

    def exec_ip(self, *args: str) -> None:
        _ip("-n", self.name, *args)

    def popen(self, argv: Sequence[str], **kw: Any) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.name, *argv], **kw)

    def cut(self) -> None:
        """The link down: the namespace reaches nothing outside, nothing
        reaches it (the host still reaches its own address, .host)."""
        _ip("link", "set", self.host_if, "down")

    def heal(self) -> None:
        _ip("link", "set", self.host_if, "up")

    def remove(self) -> None:
        """Every link and namespace made here (deleting one veth end
        deletes the pair); what is already gone is no error."""
        if "link" in self._made:
            _ip("link", "del", self.host_if, check=False)
        if "netns" in self._made:
            _ip("netns", "del", self.name, check=False)
        self._made = []


DEAD_NEIGHBOUR = 200


class NetnsNet:
    """``n`` replica namespaces on one bridge; ``set(i, j, blocked=)`` cuts
    or restores what replica i sends replica j (indices from 0)."""

    unavailable = staticmethod(unavailable)

    def __init__(self, n: int, tag: int) -> None:
        assert 1 <= n <= 9 and 0 <= tag <= 9, "addresses must keep 127.0.0.1's length"
        self.n = n
        self.tag = tag
        self.bridge = f"rdt-cb{tag}"
        self.cut: Set[Tuple[int, int]] = set()

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
            outer = f"rdt-c{self.tag}h{i}"
            _veth_ns(self.ns(i), outer, f"rdt-c{self.tag}n{i}", f"{self.host(i)}/24")
            _ip("link", "set", outer, "master", self.bridge, "up")

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
