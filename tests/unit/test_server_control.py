"""`stigmer server stop` and `stigmer server logs` through click's CliRunner, without a server.

The real thing (a `server start` process stopped, its log followed) is tests/e2e/test_server_control.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from stigmer.cli import cli
from stigmer.cli.server_control import log_file_for
from stigmer.pidfile import PidFile, ServerRecord, pid_file_path

pytestmark = pytest.mark.timeout(60)


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, prog_name="stigmer")


def test_log_file_for_the_flag(tmp_path: Path) -> None:
    assert log_file_for(None, tmp_path) == tmp_path / "logs" / "stigmer.log"
    assert log_file_for(Path("none"), tmp_path) is None
    assert log_file_for(Path("/var/log/s.log"), tmp_path) == Path("/var/log/s.log")


def test_stop_with_nothing_running_says_so_and_exits_0(tmp_path: Path) -> None:
    result = run("server", "stop", "--data-dir", str(tmp_path))
    assert (result.exit_code, result.stdout) == (0, f"no server is running on data dir {tmp_path}\n")
    as_json = run("server", "stop", "-o", "json", env={"STIGMER_DATA_DIR": str(tmp_path)})
    assert as_json.exit_code == 0
    assert json.loads(as_json.stdout) == {
        "stopped": False,
        "running": False,
        "data_dir": str(tmp_path),
        "stale_pid": None,
        "message": f"no server is running on data dir {tmp_path}",
    }


def test_stop_removes_a_stale_pid_file(tmp_path: Path) -> None:
    pid_file_path(tmp_path).write_text(ServerRecord(pid=999_999_999).to_json())  # nobody holds it
    result = run("server", "stop", "--data-dir", str(tmp_path))
    assert result.exit_code == 0
    assert result.stdout == (
        f"no server is running on data dir {tmp_path} (removed a stale pid file left by pid 999999999)\n"
    )
    assert not pid_file_path(tmp_path).exists()


def test_logs_prints_the_last_lines_of_the_default_file(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "stigmer.log"
    log.parent.mkdir()
    log.write_text("".join(f"line {i}\n" for i in range(300)))
    default = run("server", "logs", "--data-dir", str(tmp_path))
    assert default.exit_code == 0 and default.stdout.splitlines() == [f"line {i}" for i in range(200, 300)]
    three = run("server", "logs", "--data-dir", str(tmp_path), "-n", "3")
    assert three.stdout == "line 297\nline 298\nline 299\n"


def test_logs_reads_the_file_a_running_server_says_it_writes(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.log"
    elsewhere.write_text("from the custom file\n")
    record = ServerRecord(pid=1, log_file=str(elsewhere))
    with PidFile.acquire(pid_file_path(tmp_path / "data"), record):
        result = run("server", "logs", "--data-dir", str(tmp_path / "data"))
    assert (result.exit_code, result.stdout) == (0, "from the custom file\n")
    explicit = run("server", "logs", "--log-file", str(elsewhere), "--tail", "1")
    assert (explicit.exit_code, explicit.stdout) == (0, "from the custom file\n")


def test_logs_without_a_file_names_the_path_and_exits_1(tmp_path: Path) -> None:
    result = run("server", "logs", "--data-dir", str(tmp_path))
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr.startswith(f"❌ Error: cannot read the log file {tmp_path / 'logs' / 'stigmer.log'} (")
    named = run("server", "logs", "--log-file", str(tmp_path / "x.log"), "-f")
    assert named.exit_code == 1
    assert named.stderr == f"❌ Error: cannot read the log file {tmp_path / 'x.log'} (no such file)\n"
