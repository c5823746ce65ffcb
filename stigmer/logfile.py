"""The server's log file: where it is, its last lines, and following it across rotation.

``stigmer server start`` writes ``<data dir>/logs/stigmer.log`` (stigmer.logs; loguru renames it
aside at 20 MB and starts a new one at the same path). :class:`LogFollower` reads it the way
``tail -F`` does: it keeps the file it opened, and when the path names another file (rotated:
a new inode) it reads what is left of the old one and moves on to the new one from its start; a
file truncated in place is read again from its start.
"""

from __future__ import annotations

import os
from pathlib import Path

LOG_FILE_NAME = "stigmer.log"
#: ``--log-file none``: the server writes no log file.
NO_LOG_FILE = "none"
_BLOCK = 64 * 1024


def default_log_file(data_dir: Path) -> Path:
    return data_dir / "logs" / LOG_FILE_NAME


def _decode(line: bytes) -> str:
    return line.decode("utf-8", "replace").removesuffix("\r")


class LogFollower:
    """One log file, opened; :meth:`tail` once, then :meth:`poll` as often as wanted.

    Only complete lines are returned: a line still being written waits for its newline (or for
    the file to be rotated away, which ends it)."""

    def __init__(self, path: Path) -> None:
        """Open ``path`` at its start; ``FileNotFoundError`` (an ``OSError``) if it is not there."""
        self.path = path
        self._file = path.open("rb", buffering=0)
        self._partial = b""

    def _identity(self) -> tuple[int, int]:
        st = os.fstat(self._file.fileno())
        return st.st_dev, st.st_ino

    def tail(self, lines: int) -> list[str]:
        """The last ``lines`` complete lines now in the file; :meth:`poll` goes on after them."""
        size = os.fstat(self._file.fileno()).st_size
        start, data = size, b""
        while start > 0 and data.count(b"\n") <= lines:
            step = min(_BLOCK, start)
            start -= step
            data = os.pread(self._file.fileno(), step, start) + data
        self._file.seek(size)
        *complete, self._partial = data.split(b"\n")
        if start > 0:
            complete = complete[1:]  # the first piece is the end of a line that began before
        return [_decode(line) for line in complete[len(complete) - lines :]] if lines else []

    def _drain(self) -> list[str]:
        chunks = [self._partial]
        while chunk := self._file.read(_BLOCK):
            chunks.append(chunk)
        *complete, self._partial = b"".join(chunks).split(b"\n")
        return [_decode(line) for line in complete]

    def poll(self) -> list[str]:
        """The complete lines written since the last call, across a rotation or a truncation."""
        out = self._drain()
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return out  # mid-rotation: the new file is not there yet; keep reading the old one
        if (st.st_dev, st.st_ino) != self._identity():
            if self._partial:  # the old file is done: whatever it ends with is a whole line
                out.append(_decode(self._partial))
                self._partial = b""
            try:
                new = self.path.open("rb", buffering=0)
            except FileNotFoundError:
                return out
            self._file.close()
            self._file = new
            out += self._drain()
        elif st.st_size < self._file.tell():  # truncated in place (copytruncate)
            self._file.seek(0)
            self._partial = b""
            out += self._drain()
        return out

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> LogFollower:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


__all__ = ["LOG_FILE_NAME", "NO_LOG_FILE", "LogFollower", "default_log_file"]
