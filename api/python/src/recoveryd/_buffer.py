"""The agent's write buffer for availability mode (docs: api/python/README.md).

Checkpoint writes, completions and failures that could not reach a majority
wait here, in order, until the agent replays them. On disk it is one
append-only file of JSON lines in ``buffer_dir``:

- an entry per buffered write, fsync'd before the write counts as done:
  ``{"seq", "task_id", "attempt", "kind", "version", "data"}`` for a
  checkpoint, ``"result"`` for ``kind: complete``, ``"error"`` and
  ``"retryable"`` for ``kind: fail``;
- ``{"done": seq}`` once every entry up to ``seq`` was answered (entries
  leave in order). These are not fsync'd: a lost one replays an answered
  write again, which the engine answers the same way (idempotent).

The file is emptied when the last entry leaves, and rewritten with the
entries left when answered ones take more than ``max_bytes``. A torn last
line (a crash in the middle of an append) is ignored when loading. One
process at a time: the file is locked (``flock``).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
from collections import deque
from typing import Any, Deque, Dict, Optional, Tuple

from .errors import BufferFull, RecoverydError

log = logging.getLogger("recoveryd.agent")

Entry = Dict[str, Any]
KINDS = ("checkpoint", "complete", "fail")


class WriteBuffer:
    """Buffered writes in order, on disk when ``path`` is given (thread-safe)."""

    def __init__(self, path: Optional[str], max_bytes: int) -> None:
        if max_bytes < 1024:
            raise ValueError(f"buffer_max_bytes must be at least 1024, not {max_bytes}")
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: Deque[Tuple[Entry, int]] = deque()  # (entry, its line's size)
        self._bytes = 0  # of the entries in _entries
        self._file_bytes = 0
        self._seq = 0
        self._fd = -1
        self.closed = False
        if path is not None:
            self._open(path)

    # ---- the file ---------------------------------------------------------

    def _open(self, path: str) -> None:
        os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)
        created = not os.path.exists(path)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        if created:
            _fsync_dir(path)  # the file itself survives a crash, not only its lines
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._fd)
            self._fd = -1
            raise RuntimeError(f"buffer {path} is in use by another agent process") from None
        with os.fdopen(os.dup(self._fd), "rb") as f:
            f.seek(0)
            raw = f.read()
        if raw and not raw.endswith(b"\n"):
            # A crash in the middle of an append: that write never counted
            # as buffered; cut it off so that the next append starts a line.
            keep = raw.rfind(b"\n") + 1
            log.warning("recoveryd: buffer %s: a torn last line (%d bytes) dropped", path,
                        len(raw) - keep)
            raw = raw[:keep]
            os.ftruncate(self._fd, keep)
        self._file_bytes = len(raw)
        entries: Dict[int, Tuple[Entry, int]] = {}
        done = 0
        for n, line in enumerate(raw.split(b"\n")):
            if not line:
                continue
            try:
                obj = json.loads(line)
                if "done" in obj:
                    done = max(done, int(obj["done"]))
                    continue
                seq = int(obj["seq"])
                if obj.get("kind") not in KINDS:
                    raise ValueError(f"kind {obj.get('kind')!r}")
                entries[seq] = (obj, len(line) + 1)
                self._seq = max(self._seq, seq)
            except (ValueError, KeyError, TypeError) as e:
                log.warning("recoveryd: buffer %s: line %d ignored (%s)", path, n + 1, e)
        for seq in sorted(s for s in entries if s > done):
            self._entries.append(entries[seq])
            self._bytes += entries[seq][1]
        if self._entries:
            log.info("recoveryd: buffer %s: %d write(s) to replay", path, len(self._entries))
        elif self._file_bytes:
            self._truncate()

    def _append_line(self, line: bytes, sync: bool) -> None:
        if self._fd < 0:
            return
        os.write(self._fd, line)
        if sync:
            os.fsync(self._fd)
        self._file_bytes += len(line)

    def _truncate(self) -> None:
        os.ftruncate(self._fd, 0)
        os.fsync(self._fd)
        self._file_bytes = 0

    def _rewrite(self) -> None:
        """The entries left, in a new file that replaces the old one."""
        assert self.path is not None
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as f:
            for entry, _ in self._entries:
                f.write(_line(entry))
            f.flush()
            os.fsync(f.fileno())
        fd = os.open(tmp, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(tmp, self.path)
        _fsync_dir(self.path)
        os.close(self._fd)
        self._fd = fd
        self._file_bytes = self._bytes

    # ---- the queue --------------------------------------------------------

    def append(self, task_id: str, attempt: int, kind: str, version: Optional[int],
               fields: Dict[str, Any]) -> Entry:
        """Buffers one write (durably when on disk); raises BufferFull."""
        assert kind in KINDS
        with self._lock:
            if self.closed:
                raise RecoverydError("the agent stopped: its write buffer is closed")
            entry: Entry = {"seq": self._seq + 1, "task_id": task_id, "attempt": attempt,
                            "kind": kind, "version": version, **fields}
            line = _line(entry)
            if self._bytes + len(line) > self.max_bytes:
                raise BufferFull(len(self._entries), self._bytes, self.max_bytes, len(line))
            self._append_line(line, sync=True)
            self._seq += 1
            self._entries.append((entry, len(line)))
            self._bytes += len(line)
            return entry

    def head(self) -> Optional[Entry]:
        with self._lock:
            return self._entries[0][0] if self._entries else None

    def done(self, seq: int) -> None:
        """The head entry ``seq`` was answered: it leaves the buffer."""
        with self._lock:
            if not self._entries or self._entries[0][0]["seq"] != seq:
                return
            _, size = self._entries.popleft()
            self._bytes -= size
            if self._fd < 0:
                return
            if not self._entries:
                self._truncate()
            elif self._file_bytes - self._bytes > self.max_bytes:
                self._rewrite()
            else:
                self._append_line(_line({"done": seq}), sync=False)

    def newest_of(self, task_id: str, attempt: int) -> Optional[Entry]:
        """The last buffered write of one attempt of a task, or None."""
        with self._lock:
            for e, _ in reversed(self._entries):
                if e["task_id"] == task_id and e["attempt"] == attempt:
                    return e
            return None

    def has_task(self, task_id: str) -> bool:
        with self._lock:
            return any(e["task_id"] == task_id for e, _ in self._entries)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def size(self) -> int:
        """Bytes of the entries waiting."""
        with self._lock:
            return self._bytes

    def reopen(self) -> None:
        """After close(): the file again, with what it holds."""
        with self._lock:
            if not self.closed:
                return
            self.closed = False
            if self.path is not None:
                self._entries.clear()
                self._bytes = 0
                self._open(self.path)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def _line(obj: Dict[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
