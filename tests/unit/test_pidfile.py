"""stigmer.pidfile: one server per data dir, held by flock; a stale file is taken over."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from stigmer import pidfile
from stigmer.pidfile import DataDirInUseError, PidFile, ServerRecord, pid_file_path, probe, process_alive, read_record
from stigmer.testing.eventually import wait_until

pytestmark = pytest.mark.timeout(60)

RECORD = ServerRecord(pid=os.getpid(), address="127.0.0.1:7234", data_dir="/srv/d", log_file="/srv/d/logs/x.log")


def test_acquire_writes_the_record_and_release_removes_the_file(tmp_path: Path) -> None:
    path = pid_file_path(tmp_path / "data")  # the data dir is created
    with PidFile.acquire(path, RECORD) as held:
        assert held.held and held.taken_over is None
        written = json.loads(path.read_text())
        assert written["pid"] == os.getpid() and written["address"] == "127.0.0.1:7234"
        assert read_record(path) == RECORD
    assert not path.exists() and not held.held
    held.release()  # twice is fine


def test_a_second_holder_is_refused_naming_the_data_dir_and_the_pid(tmp_path: Path) -> None:
    path = pid_file_path(tmp_path)
    with PidFile.acquire(path, RECORD):
        with pytest.raises(DataDirInUseError) as info:
            PidFile.acquire(path, ServerRecord(pid=1), patience=0.1)
        assert info.value.data_dir == tmp_path and info.value.holder == RECORD
        message = str(info.value)
        assert f"pid {os.getpid()}, listening on 127.0.0.1:7234, since " in message
        assert f"is running on data dir {tmp_path}" in message
        assert f"`stigmer server stop --data-dir {tmp_path}`" in message
        assert "\n" not in message
        assert read_record(path) == RECORD  # the refused one wrote nothing


def test_a_holder_that_wrote_nothing_yet_is_still_a_refusal(tmp_path: Path) -> None:
    path = pid_file_path(tmp_path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(DataDirInUseError, match="it is starting and has not written its pid yet"):
            PidFile.acquire(path, RECORD, patience=0)
    finally:
        os.close(fd)


def test_a_lock_held_for_a_moment_is_waited_for(tmp_path: Path) -> None:
    """probe() holds the lock for an instant: a server starting just then must not be turned away."""
    path = pid_file_path(tmp_path)
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    timer = threading.Timer(0.1, fcntl.flock, args=(fd, fcntl.LOCK_UN))
    timer.start()
    try:
        with PidFile.acquire(path, RECORD, patience=5) as held:
            assert held.held
    finally:
        timer.cancel()
        timer.join()
        os.close(fd)


def test_a_killed_servers_file_is_stale_and_taken_over(tmp_path: Path) -> None:
    path = pid_file_path(tmp_path)
    code = (
        "import sys; from pathlib import Path; from stigmer.pidfile import PidFile, ServerRecord; import os\n"
        f"held = PidFile.acquire(Path({str(path)!r}), ServerRecord(pid=os.getpid(), address='a:1'))\n"
        "print('held', flush=True); sys.stdin.read()\n"  # holds the lock until killed (or stdin closes)
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "held\n"
        assert probe(path).running
        with pytest.raises(DataDirInUseError, match=f"pid {child.pid}, listening on a:1"):
            PidFile.acquire(path, RECORD, patience=0)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
    assert path.exists()  # SIGKILL: nobody removed it, but the kernel dropped the lock
    with PidFile.acquire(path, RECORD, patience=0) as held:
        assert held.taken_over is not None and held.taken_over.pid == child.pid
        assert read_record(path) == RECORD


def test_a_file_replaced_between_open_and_lock_is_opened_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The unlink race: the file we opened is no longer the one at the path once we hold its lock."""
    path = pid_file_path(tmp_path)
    path.write_text("")
    real_flock, calls = fcntl.flock, []

    def flock(fd: int, operation: int) -> None:
        calls.append(fd)
        if len(calls) == 1:  # someone holding the old file's lock removes it, another creates a new one
            path.unlink()
            path.write_text("")
        real_flock(fd, operation)

    monkeypatch.setattr(pidfile.fcntl, "flock", flock)
    with PidFile.acquire(path, RECORD) as held:
        assert len(calls) == 2
        assert read_record(path) == RECORD and held.held


def test_release_leaves_a_file_that_is_no_longer_ours(tmp_path: Path) -> None:
    path = pid_file_path(tmp_path)
    held = PidFile.acquire(path, RECORD)
    path.unlink()
    path.write_text('{"pid": 4242}')
    held.release()
    assert read_record(path) == ServerRecord(pid=4242, started_at="")


def test_probe_tells_missing_running_and_stale_apart(tmp_path: Path) -> None:
    path = pid_file_path(tmp_path)
    assert probe(path) == pidfile.Probe(running=False, record=None)
    with PidFile.acquire(path, RECORD):
        assert probe(path) == pidfile.Probe(running=True, record=RECORD)
        assert path.exists()
    path.write_text('{"pid": 4242, "address": "x:1"}')  # nobody holds it
    assert probe(path, remove_stale=False) == pidfile.Probe(
        running=False, record=ServerRecord(4242, "x:1", started_at="")
    )
    assert path.exists()
    found = probe(path)
    assert found.stale_removed and found.record is not None and found.record.pid == 4242
    assert not path.exists()


@pytest.mark.parametrize(
    ("text", "pid"),
    [
        ("1234\n", 1234),
        ('{"pid": 77, "address": "h:1", "extra": [1]}', 77),
        ('{"pid": 77, "address": 5}', 77),  # a field of the wrong type is dropped, not trusted
        ("", None),
        ("{", None),
        ("[1]", None),
        ('{"pid": true}', None),
        ('{"pid": -1}', None),
        ('{"pid": "12"}', None),
    ],
)
def test_records_are_read_defensively(text: str, pid: int | None) -> None:
    record = ServerRecord.from_text(text)
    assert (record.pid if record else None) == pid
    if record is not None:
        assert record.address in ("", "h:1")


def test_describe_says_what_is_known() -> None:
    assert ServerRecord(pid=5, started_at="").describe() == "pid 5"
    described = ServerRecord(pid=5, address="h:1", started_at="2025-01-31T12:00:01+01:00").describe()
    assert described == "pid 5, listening on h:1, since 2025-01-31 12:00:01"


def test_process_alive_counts_a_zombie_as_gone() -> None:
    assert process_alive(os.getpid())
    child = subprocess.Popen(["true"])
    try:
        # Not reaped yet: kill(pid, 0) still succeeds, /proc says Z.
        wait_until(lambda: not process_alive(child.pid), timeout=10, what="the child to exit")
    finally:
        child.wait(timeout=10)
    assert not process_alive(child.pid)
