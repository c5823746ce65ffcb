"""stigmer.logfile: the last lines of the server's log, and following it across rotation and truncation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from loguru import logger

from stigmer.logfile import LogFollower, default_log_file
from stigmer.testing.eventually import wait_until

pytestmark = pytest.mark.timeout(60)


def lines(n: int, prefix: str = "line") -> str:
    return "".join(f"{prefix} {i}\n" for i in range(n))


def test_the_default_log_file_is_under_the_data_dir(tmp_path: Path) -> None:
    assert default_log_file(tmp_path) == tmp_path / "logs" / "stigmer.log"


@pytest.mark.parametrize(("count", "want"), [(0, []), (2, ["line 3", "line 4"]), (5, None), (100, None)])
def test_tail_gives_the_last_lines(tmp_path: Path, count: int, want: list[str] | None) -> None:
    path = tmp_path / "s.log"
    path.write_text(lines(5))
    with LogFollower(path) as follower:
        assert follower.tail(count) == (want if want is not None else [f"line {i}" for i in range(5)])
        assert follower.poll() == []  # nothing new yet: what tail printed is not printed again


def test_tail_reads_across_blocks_from_the_end(tmp_path: Path) -> None:
    path = tmp_path / "s.log"
    body = "".join(f"{i:06d} " + "x" * (i % 200) + "\n" for i in range(5000))  # ~0.5 MB, lines of all lengths
    path.write_text(body)
    with LogFollower(path) as follower:
        assert follower.tail(1234) == body.splitlines()[-1234:]


def test_an_unfinished_last_line_waits_for_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "s.log"
    path.write_text("one\ntw")
    with LogFollower(path) as follower:
        assert follower.tail(10) == ["one"]
        with path.open("a") as f:
            f.write("o\nthr")
        assert follower.poll() == ["two"]
        with path.open("a") as f:
            f.write("ee\n")
        assert follower.poll() == ["three"]


def test_poll_follows_a_rename_rotation(tmp_path: Path) -> None:
    path = tmp_path / "s.log"
    path.write_text("a\n")
    with LogFollower(path) as follower:
        assert follower.tail(10) == ["a"]
        with path.open("a") as f:
            f.write("b\nend without newline")  # written to the old file just before the rotation
        path.rename(tmp_path / "s.2025-01-31.log")
        assert follower.poll() == ["b"]  # no new file yet: still on the old one
        path.write_text("c\n")
        assert follower.poll() == ["end without newline", "c"]
        with path.open("a") as f:
            f.write("d\n")
        assert follower.poll() == ["d"]


def test_poll_reads_a_file_truncated_in_place_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "s.log"
    path.write_text(lines(3))
    with LogFollower(path) as follower:
        follower.tail(3)
        with path.open("r+") as f:  # copytruncate
            f.truncate(0)
        with path.open("a") as f:
            f.write("fresh\n")
        assert follower.poll() == ["fresh"]


def test_undecodable_bytes_do_not_stop_the_follower(tmp_path: Path) -> None:
    path = tmp_path / "s.log"
    path.write_bytes(b"ok\n\xff\xfe bad\r\n")
    with LogFollower(path) as follower:
        assert follower.tail(5) == ["ok", "\ufffd\ufffd bad"]


def test_a_missing_file_is_an_oserror_naming_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.log"):
        LogFollower(tmp_path / "nope.log")


def test_following_loguru_across_its_own_rotations(tmp_path: Path) -> None:
    """The real writer: loguru renames the file aside at the size limit and starts a new one.

    Each line is awaited (polled with a deadline) before the next is written, as a follower that
    keeps up sees them; every line must be seen, in order, across the rotations."""
    path = tmp_path / "stigmer.log"
    sink = logger.add(path, format="{message}", rotation="300 B", retention=50)
    seen: list[str] = []
    try:
        logger.info("first")
        with LogFollower(path) as follower:
            assert follower.tail(10) == ["first"]
            for i in range(40):
                logger.info(f"message number {i:03d} " + "-" * 20)

                def arrived(i: int = i) -> bool:
                    seen.extend(follower.poll())
                    return any(line.startswith(f"message number {i:03d}") for line in seen)

                wait_until(arrived, timeout=10, what=f"message {i} through the follower")
    finally:
        logger.remove(sink)
    assert [line[:18] for line in seen] == [f"message number {i:03d}" for i in range(40)]
    rotated = [p for p in os.listdir(tmp_path) if p != "stigmer.log"]
    assert len(rotated) >= 5, rotated  # it really did rotate, several times
