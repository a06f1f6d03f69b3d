"""The nemesis's pieces without an engine: the schedule's rules, the
partition shapes, and the proxies' faults on real loopback sockets (a raft
peer's handshake tells RaftProxy which link a connection is).

    python3 tests/chaos/test_nemesis.py
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading
import unittest
from typing import List

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "api", "python", "tests"))  # netproxy
sys.path.insert(0, os.path.join(HERE, "..", "..", "api", "python", "src"))  # backups.py's
sys.path.insert(0, HERE)

import nemesis  # noqa: E402
from netproxy import NetProxy, RaftNet  # noqa: E402


class Echo:
    """A loopback server that echoes what it gets."""

    def __init__(self) -> None:
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.port = self.srv.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(c,), daemon=True).start()

    @staticmethod
    def _echo(c: socket.socket) -> None:
        try:
            while True:
                d = c.recv(4096)
                if not d:
                    break
                c.sendall(d)
        except OSError:
            pass
        c.close()

    def close(self) -> None:
        self.srv.close()


def handshake(sender: int) -> bytes:
    addr = b"127.0.0.1:9\0\0\0\0\0"
    return struct.pack("<QQQ", 1, sender, len(addr)) + addr


def talk(port: int, first: bytes, timeout: float = 1.0) -> bytes:
    """Sends ``first`` + b"ping" and returns what came back in time."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(first + b"ping")
        got = b""
        try:
            while len(got) < len(first) + 4:
                d = s.recv(4096)
                if not d:
                    break
                got += d
        except OSError:
            pass
        return got


class ScheduleTest(unittest.TestCase):
    def test_the_schedule_is_a_function_of_the_seed(self) -> None:
        a = nemesis.schedule(5, 60, 3, 3)
        self.assertEqual(a, nemesis.schedule(5, 60, 3, 3))
        self.assertNotEqual(a, nemesis.schedule(6, 60, 3, 3))

    def test_a_partition_never_overlaps_another_replica_fault(self) -> None:
        drawn = 0
        for seed in range(30):
            fs = nemesis.schedule(seed, 120, 5, 4)
            parts = [f for f in fs if f.kind == "partition"]
            others = [f for f in fs if f.kind in nemesis.REPLICA_KINDS]
            drawn += len(parts)
            for p in parts:
                for o in others + [q for q in parts if q is not p]:
                    overlap = o.at < p.at + p.duration and p.at < o.at + o.duration
                    self.assertFalse(overlap, f"seed {seed}: {p} and {o}")
                self.assertEqual(len(p.params["homes"]), 4)
                self.assertEqual(sorted(p.params["order"]), list(range(5)))
        self.assertGreater(drawn, 30)  # about two per seed: the rule was tested


class DamageTest(unittest.TestCase):
    def test_damages_are_apart_even_with_two_replica_faults(self) -> None:
        n = 0
        for seed in range(30):
            fs = [f for f in nemesis.schedule(seed, 300, 3, 3, replica_faults=2)
                  if f.kind == "damage"]
            n += len(fs)
            for a, b in zip(fs, fs[1:]):
                self.assertGreaterEqual(b.at, a.at + a.duration + nemesis.DAMAGE_REJOIN,
                                        f"seed {seed}: {a} then {b}")
        self.assertGreater(n, 30)


class BackupDamageTest(unittest.TestCase):
    def test_backup_damages_leave_the_rest_of_the_schedule_as_it_was(self) -> None:
        without = nemesis.schedule(5, 180, 3, 4)
        with_ = nemesis.schedule(5, 180, 3, 4, nemesis.ALL_KINDS)
        self.assertEqual([f for f in with_ if f.kind != "damage_backup"], without)
        dmg = [f for f in with_ if f.kind == "damage_backup"]
        self.assertEqual(len(dmg), 3)  # one a minute
        self.assertTrue(all(0.2 * 180 <= f.at <= 0.9 * 180 for f in dmg))
        self.assertEqual([f.at for f in with_], sorted(f.at for f in with_))

    def test_the_store_flips_eight_bytes_of_the_object_asked_for(self) -> None:
        import tempfile
        import backups

        with tempfile.TemporaryDirectory() as d:
            st = backups.Store(d)
            self.assertEqual(st.damage("image", 0.5), {"file": None})  # nothing yet
            os.makedirs(os.path.join(st.dir, "backups"))
            os.makedirs(os.path.join(st.dir, "archive", "cid"))
            body = bytes(range(256)) * 4
            for rel in ("backups/b1.img", "backups/b1.json", "backups/b1.img.tmp",
                        "archive/cid/%020d-%020d.zst" % (1, 9)):
                with open(os.path.join(st.dir, rel), "wb") as f:
                    f.write(body)
            seen = st.damage("segment", 0.25)
            self.assertEqual((seen["damaged"], seen["first"], seen["last"]), ("segment", 1, 9))
            with open(os.path.join(st.dir, seen["file"]), "rb") as f:
                got = f.read()
            diff = [i for i in range(len(body)) if got[i] != body[i]]
            self.assertEqual(diff, list(range(seen["offset"], seen["offset"] + 8)))
            seen = st.damage("manifest", 0.9)
            self.assertEqual((seen["file"], seen["backup"]), ("backups/b1.json", "b1"))
            self.assertEqual(st.objects("image"), ["backups/b1.img"])  # not the .tmp


class ShapeTest(unittest.TestCase):
    @staticmethod
    def cut(conn: List[List[bool]]) -> List[List[int]]:
        n = len(conn)
        return [[i, j] for i in range(n) for j in range(n) if i != j and not conn[i][j]]

    def test_the_leader_alone(self) -> None:
        conn = nemesis.reachable("leader", 3, [0, 1, 2], leader=2)
        self.assertEqual(self.cut(conn), [[0, 2], [1, 2], [2, 0], [2, 1]])
        # No leader known: the seed's first replica.
        self.assertEqual(self.cut(nemesis.reachable("leader", 3, [1, 0, 2], None)),
                         [[0, 1], [1, 0], [1, 2], [2, 1]])

    def test_a_minority_of_five_is_two(self) -> None:
        conn = nemesis.reachable("majority", 5, [3, 1, 0, 2, 4], None)
        side = {1, 3}
        for i in range(5):
            for j in range(5):
                self.assertEqual(conn[i][j], (i in side) == (j in side), (i, j))

    def test_a_bridge_sees_both_sides(self) -> None:
        conn = nemesis.reachable("bridge", 3, [2, 0, 1], None)
        self.assertEqual(self.cut(conn), [[1, 2], [2, 1]])  # 0 in the middle


class ProxyTest(unittest.TestCase):
    def setUp(self) -> None:
        self.echo = Echo()

    def tearDown(self) -> None:
        self.echo.close()

    def test_a_raft_link_is_cut_one_way_by_its_sender(self) -> None:
        net = RaftNet(3)
        port = net.port(0, self.echo.port)  # in front of replica 1 (index 0)
        for i in (1, 2):
            net.port(i, self.echo.port)
        try:
            self.assertEqual(talk(port, handshake(2)), handshake(2) + b"ping")
            net.set(1, 0, cut=True)  # what replica 2 sends replica 1
            self.assertEqual(talk(port, handshake(2), 0.5), b"")
            self.assertEqual(talk(port, handshake(3)), handshake(3) + b"ping")
            net.set(1, 0, cut=False)
            self.assertEqual(talk(port, handshake(2)), handshake(2) + b"ping")
            net.set_replica(0, blocked=True)  # partitioned: every sender
            self.assertEqual(talk(port, handshake(3), 0.5), b"")
            net.heal()
            self.assertEqual(talk(port, handshake(3)), handshake(3) + b"ping")
        finally:
            net.close()

    def test_a_cut_and_a_partition_heal_apart(self) -> None:
        px = NetProxy(("127.0.0.1", self.echo.port))
        try:
            px.set(cut=True)
            px.set(blocked=True)
            px.heal()  # the fault is over, the partition is not
            self.assertEqual(talk(px.port, b"", 0.5), b"")
            px.set(blocked=False)
            self.assertEqual(talk(px.port, b""), b"ping")
        finally:
            px.close()


if __name__ == "__main__":
    unittest.main()
