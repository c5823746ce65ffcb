"""`stigmer server stop` and `stigmer server logs` against real `stigmer server start` processes.

No Temporal is needed: the server serves (and logs) whether Temporal is up or not, so each server
is pointed at a port nobody listens on. Every process is stopped by PID on every path: the
servers by the stigmer_server_factory fixture, the `logs -f` follower by the test's finally.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from stigmer.pidfile import pid_file_path, read_record
from stigmer.testing.eventually import wait_until
from stigmer.testing.factories import StigmerServerFactory
from stigmer.testing.ports import free_port
from stigmer.testing.server import CliResult, StigmerServerProcess, stigmer_binary, wait_for_log

pytestmark = pytest.mark.timeout(120)


def stigmer(*args: str, timeout: float = 60.0) -> CliResult:
    done = subprocess.run(
        [stigmer_binary(), *args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def nowhere() -> str:
    return f"127.0.0.1:{free_port()}"


@pytest.fixture
def server(stigmer_server_factory: StigmerServerFactory) -> StigmerServerProcess:
    return stigmer_server_factory(temporal=nowhere())


def pid_of(server: StigmerServerProcess) -> int:
    assert server.proc is not None
    return server.proc.pid


def exited(server: StigmerServerProcess) -> int:
    """The server's exit code: `server stop` returns once it is gone; only the reaping is left."""
    assert server.proc is not None
    return server.proc.wait(timeout=10)


def test_a_second_server_on_the_same_data_dir_is_refused(server: StigmerServerProcess) -> None:
    second = stigmer(
        "server", "start", "--data-dir", str(server.data_dir), "--address", nowhere(), "--temporal-host-port", nowhere()
    )
    assert second.code == 75, second.text
    assert second.out == ""
    assert second.err.count("\n") == 1, second.err  # one line
    assert second.err.startswith(
        f"❌ Error: another stigmer server (pid {pid_of(server)}, listening on {server.address}"
    )
    assert f"is running on data dir {server.data_dir}" in second.err
    assert "Starting Stigmer Server" not in second.err
    assert server.proc is not None and server.proc.poll() is None  # the first one serves on
    record = read_record(pid_file_path(server.data_dir))
    assert record is not None and record.pid == pid_of(server) and record.address == server.address


def test_stop_stops_the_server_and_removes_its_pid_file(server: StigmerServerProcess) -> None:
    pid = pid_of(server)
    assert pid_file_path(server.data_dir).exists()
    done = stigmer("server", "stop", "--data-dir", str(server.data_dir))
    assert done.code == 0, done.text + server.log()[-3000:]
    match = re.fullmatch(r"✅ Stopped server pid (\d+) on data dir (.+) in (\d+\.\d) s\n", done.out)
    assert match is not None, done.out
    assert (int(match[1]), match[2]) == (pid, str(server.data_dir))
    assert exited(server) == 0
    assert not pid_file_path(server.data_dir).exists()
    assert "Received SIGTERM - shutting down gracefully" in server.log()
    assert "Stigmer Server stopped" in server.log()

    again = stigmer("server", "stop", "--data-dir", str(server.data_dir), "-o", "json")
    assert again.code == 0, again.text
    assert json.loads(again.out)["running"] is False


def test_stop_with_nothing_running(tmp_path: Path) -> None:
    done = stigmer("server", "stop", "--data-dir", str(tmp_path))
    assert (done.code, done.out) == (0, f"no server is running on data dir {tmp_path}\n"), done.text


def test_a_killed_servers_pid_file_is_taken_over(
    server: StigmerServerProcess, stigmer_server_factory: StigmerServerFactory
) -> None:
    old_pid = pid_of(server)
    server.kill()  # SIGKILL: no clean-up, the pid file stays behind (unlocked)
    assert read_record(pid_file_path(server.data_dir)) is not None
    successor = StigmerServerProcess(data_dir=server.data_dir, temporal=nowhere())
    stigmer_server_factory.servers.append(successor)  # stopped by PID at teardown whatever happens
    before = len(server.log())  # the same data dir, so the same server.out: look past the old lines
    successor.start()
    wait_for_log(successor, "Stigmer Server started successfully", after=before)
    assert re.search(rf"Took over the stale pid file .*\(pid {old_pid}, listening on ", successor.log()[before:])
    stopped = stigmer("server", "stop", "--data-dir", str(server.data_dir), "-o", "json")
    assert stopped.code == 0, stopped.text
    payload = json.loads(stopped.out)
    assert payload["stopped"] is True and payload["pid"] == pid_of(successor) and payload["forced"] is False
    assert exited(successor) == 0


def test_stop_times_out_and_force_kills(server: StigmerServerProcess) -> None:
    pid = pid_of(server)
    os.kill(pid, signal.SIGSTOP)  # a server that does not react to SIGTERM
    try:
        late = stigmer("server", "stop", "--data-dir", str(server.data_dir), "--timeout", "1")
        assert late.code == 75, late.text
        assert f"server pid {pid} on data dir {server.data_dir} did not stop within 1 s" in late.err
        assert server.proc is not None and server.proc.poll() is None
        forced = stigmer("server", "stop", "--data-dir", str(server.data_dir), "--timeout", "0.5", "--force")
        assert forced.code == 0, forced.text
        assert forced.out.startswith(f"✅ Killed server pid {pid} on data dir {server.data_dir} (SIGKILL")
        assert exited(server) == -signal.SIGKILL
        assert not pid_file_path(server.data_dir).exists()  # removed for it
    finally:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def test_logs_tail_shows_the_startup_line(server: StigmerServerProcess) -> None:
    done = stigmer("server", "logs", "--data-dir", str(server.data_dir), "--tail", "500")
    assert done.code == 0, done.text
    assert "[INFO] Starting Stigmer Server" in done.out
    assert "[INFO] Stigmer Server started successfully" in done.out
    one = stigmer("server", "logs", "--data-dir", str(server.data_dir), "-n", "1")
    assert one.code == 0 and one.out.count("\n") == 1, one.text
    assert (server.data_dir / "logs" / "stigmer.log").is_file()


@contextmanager
def following(data_dir: Path, out: Path) -> Iterator[subprocess.Popen[bytes]]:
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [stigmer_binary(), "server", "logs", "-f", "--tail", "1", "--data-dir", str(data_dir)],
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.PIPE,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


def test_logs_follow_shows_a_line_written_after_it_started(server: StigmerServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "followed.txt"
    with following(server.data_dir, out) as follower:
        # --tail 1 prints one line at once: from then on the follower is following.
        wait_until(lambda: out.read_text().count("\n") >= 1, timeout=20, what="the follower's first line")
        assert "Stigmer Server stopped" not in out.read_text()
        assert stigmer("server", "stop", "--data-dir", str(server.data_dir)).code == 0
        wait_until(lambda: "Stigmer Server stopped" in out.read_text(), timeout=20, what="the stop through `logs -f`")
        assert follower.poll() is None  # a stopped server does not end the follower: Ctrl+C does
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=10) == 130
        assert follower.stderr is not None
        assert b"Traceback" not in follower.stderr.read()
