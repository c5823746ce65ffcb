"""`stigmer server stop` through click's CliRunner, without a server.

The real thing (a `server start` process stopped) is tests/e2e/test_server_control.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from stigmer.cli import cli
from stigmer.cli.server_control import log_file_for
from stigmer.pidfile import ServerRecord, pid_file_path

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
