"""A network namespace joined to the host by a veth pair, for partition tests.

    ns = Netns()           # rdt-<pid>-<n>: the host side gets 10.231.X.Y/30 (.host),
    ns.create()            # the namespace side the next address
    ns.popen([...])        # a process inside (ip netns exec)
    ns.cut(); ns.heal()    # the host side of the link down / up
    ns.remove()            # the namespace and the link (always: finally)

Needs root and iproute2; ``unavailable()`` says why not (tests skip then).
Names carry the ``rdt-`` prefix and the test's PID, so they never clash with
another test's; ``sweep()`` removes those of test processes that are gone
(killed by ctest's timeout before they could clean up).
"""

from __future__ import annotations

import itertools
import os
import random
import re
import shutil
import subprocess
from typing import Any, List, Optional, Sequence

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
        _ip("netns", "add", self.name)
        self._made.append("netns")
        _ip("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        self._made.append("link")
        _ip("link", "set", self.ns_if, "netns", self.name)
        _ip("addr", "add", f"{self.host}/30", "dev", self.host_if)
        _ip("link", "set", self.host_if, "up")
        self.exec_ip("addr", "add", f"{self.peer}/30", "dev", self.ns_if)
        self.exec_ip("link", "set", self.ns_if, "up")
        self.exec_ip("link", "set", "lo", "up")

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
