"""The server's pid file, ``<data dir>/stigmer.pid``: one server per data dir.

``stigmer server start`` takes an exclusive ``flock(2)`` on it before it binds its port, writes
who it is into it (a JSON :class:`ServerRecord`), holds the lock for its whole life and removes
the file on a clean exit. The lock, not the file, is the truth: the kernel drops it when the
process dies however it dies, so a file that nobody holds locked (its server was SIGKILLed, the
machine rebooted) is stale, and the next server takes it over.

``stigmer server stop`` asks :func:`probe` whether a server holds it, and whom to signal.

Removing the file races with a server that opened it a moment before: that server would lock a
file no longer at the path, and a third could then create and lock a new one. So whoever locks
checks that the path still names the file it locked (same device and inode), and starts over if
not; and the file is only ever removed by someone holding its lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from stigmer.errors import StigmerError

PID_FILE_NAME = "stigmer.pid"
#: How long :meth:`PidFile.acquire` retries a held lock before it says the data dir is in use:
#: :func:`probe` holds it for a moment, and must not turn a starting server away.
ACQUIRE_PATIENCE = 0.5
_RETRY = 0.02


def pid_file_path(data_dir: Path) -> Path:
    return data_dir / PID_FILE_NAME


@dataclass(frozen=True)
class ServerRecord:
    """What a running server writes into its pid file."""

    pid: int
    address: str = ""
    data_dir: str = ""
    #: The log file it writes ("" when it writes none): where ``server logs`` looks.
    log_file: str = ""
    #: ISO 8601 with the UTC offset, e.g. 2025-01-31T12:00:01+01:00.
    started_at: str = field(default_factory=lambda: datetime.now().astimezone().isoformat(timespec="seconds"))
    version: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False) + "\n"

    @classmethod
    def from_text(cls, text: str) -> ServerRecord | None:
        """The record in a pid file's text; None if it is not one (empty, being written, foreign)."""
        text = text.strip()
        if text.isdigit():  # a bare pid, as other tools write them
            return cls(pid=int(text), started_at="")
        try:
            data: Any = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or type(data.get("pid")) is not int or data["pid"] <= 0:
            return None
        texts = {
            k: data[k]
            for k in ("address", "data_dir", "log_file", "started_at", "version")
            if isinstance(data.get(k), str)
        }
        return cls(pid=data["pid"], **{"started_at": "", **texts})

    def describe(self) -> str:
        """``pid 123, listening on 127.0.0.1:7234, since 12:00:01``, as much as is known."""
        parts = [f"pid {self.pid}"]
        if self.address:
            parts.append(f"listening on {self.address}")
        with contextlib.suppress(ValueError):
            parts.append(f"since {datetime.fromisoformat(self.started_at).strftime('%Y-%m-%d %H:%M:%S')}")
        return ", ".join(parts)


class DataDirInUseError(StigmerError):
    """Another server holds the data dir's pid file locked; ``holder`` is what it wrote (None
    when it is still starting and has not written it yet)."""

    def __init__(self, data_dir: Path, holder: ServerRecord | None) -> None:
        who = f"({holder.describe()})" if holder else "(it is starting and has not written its pid yet)"
        super().__init__(
            f"another stigmer server {who} is running on data dir {data_dir}: stop it with "
            f"`stigmer server stop --data-dir {data_dir}`, or start this one with another --data-dir"
        )
        self.data_dir = data_dir
        self.holder = holder


def read_record(path: Path) -> ServerRecord | None:
    """What the pid file says, whether or not anyone holds it; None if it is missing or unreadable."""
    try:
        return ServerRecord.from_text(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def _lock_at(path: Path, flags: int) -> int | None:
    """Open ``path`` and take its lock without blocking: the fd, or None if someone holds it.

    Starts over if the file at the path was replaced or removed between the open and the lock."""
    while True:
        fd = os.open(path, flags | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):
            return fd
        os.close(fd)
        if not flags & os.O_CREAT and not path.exists():
            raise FileNotFoundError(path)


class PidFile:
    """The data dir's pid file, locked by this process until :meth:`release`."""

    def __init__(self, path: Path, fd: int, record: ServerRecord, taken_over: ServerRecord | None) -> None:
        self.path = path
        self.record = record
        #: What a stale file said before this process took it over (None: there was none).
        self.taken_over = taken_over
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, path: Path, record: ServerRecord, *, patience: float = ACQUIRE_PATIENCE) -> PidFile:
        """Lock ``path`` (creating it and its directory) and write ``record`` into it.

        Raises :class:`DataDirInUseError` if another process holds it, and ``OSError`` if it
        cannot be created (an unwritable data dir)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + patience
        while (fd := _lock_at(path, os.O_RDWR | os.O_CREAT)) is None:
            if time.monotonic() >= deadline:
                raise DataDirInUseError(path.parent, read_record(path))
            time.sleep(_RETRY)
        try:
            taken_over = ServerRecord.from_text(os.pread(fd, 64 * 1024, 0).decode("utf-8", "replace"))
            os.ftruncate(fd, 0)
            os.pwrite(fd, record.to_json().encode("utf-8"), 0)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, record, taken_over)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Remove the file (if it is still ours) and drop the lock; safe twice."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if _same_file(fd, self.path):
                self.path.unlink(missing_ok=True)
        finally:
            os.close(fd)

    def __enter__(self) -> PidFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


@dataclass(frozen=True)
class Probe:
    """What :func:`probe` found."""

    #: A server holds the lock: it is running (or starting, or stopping).
    running: bool
    #: What the file says (None: no file, or nothing readable in it yet).
    record: ServerRecord | None
    #: A file was there that nobody held; :func:`probe` removed it.
    stale_removed: bool = False


def probe(path: Path, *, remove_stale: bool = True) -> Probe:
    """Is a server holding ``path``? A stale file is removed (under its lock) unless told not to."""
    try:
        fd = _lock_at(path, os.O_RDONLY)
    except FileNotFoundError:
        return Probe(running=False, record=None)
    if fd is None:
        return Probe(running=True, record=read_record(path))
    try:
        record = read_record(path)
        if remove_stale:
            path.unlink(missing_ok=True)
        return Probe(running=False, record=record, stale_removed=remove_stale)
    finally:
        os.close(fd)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` names a live process (a zombie, exited but not reaped yet, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): kill(0) is all there is
    fields = stat.rpartition(")")[2].split()
    return not fields or fields[0] not in ("Z", "X")


__all__ = [
    "PID_FILE_NAME",
    "DataDirInUseError",
    "PidFile",
    "Probe",
    "ServerRecord",
    "pid_file_path",
    "probe",
    "process_alive",
    "read_record",
]
