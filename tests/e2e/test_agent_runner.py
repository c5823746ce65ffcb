"""`server start --agent-runner` in real processes: a runner of the user's own answers the agent
executions (tests/support/custom_runner.py, on the session's Temporal), a name from an installed
entry point works through STIGMER_AGENT_RUNNER, and a bad setting exits 78 with one line."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

from stigmer.client import Client, Phase
from stigmer.errors import ExitCode
from stigmer.temporal import names
from stigmer.temporal.runners import GROUP, SETTING
from stigmer.testing.ports import free_port
from stigmer.testing.server import stigmer_binary
from tests.support.custom_runner import reply_for

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
RUNNER = "tests.support.custom_runner:Runner"


def python_path(*first: Path) -> str:
    """PYTHONPATH for a server process that must import ``tests.support`` (and ``first``)."""
    rest = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return os.pathsep.join([*map(str, first), str(ROOT), *rest])


@pytest.fixture
def importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Server processes inherit the environment: let them import this checkout's ``tests``."""
    monkeypatch.setenv("PYTHONPATH", python_path())


@pytest.mark.temporal
@pytest.mark.usefixtures("importable")
def test_the_users_runner_answers_the_executions(temporal, stigmer_server_factory, monkeypatch) -> None:
    suffix = uuid.uuid4().hex[:10]  # the dev server is shared: queues of its own, so no echo worker answers
    for env in (
        names.AGENT_EXECUTION_QUEUE_ENV,
        names.WORKFLOW_EXECUTION_QUEUE_ENV,
        names.WORKFLOW_VALIDATION_QUEUE_ENV,
    ):
        monkeypatch.setenv(env, f"{env.lower()}-{suffix}")
    server = stigmer_server_factory(temporal=temporal.address, extra=["--agent-runner", RUNNER])
    assert f"Agent runner: {RUNNER}\n" in server.log()
    with Client(address=server.address, timeout=10) as client:
        client.wait_temporal_connected(timeout=30)
        asked = client.create_agent_execution(agent="reviewer", message="hello 👋")
        done = client.wait_for_phase(asked.id, [Phase.COMPLETED, Phase.FAILED], timeout=60)
        assert done.phase is Phase.COMPLETED, done.error
        assert [reply.text for reply in done.replies] == [reply_for("reviewer", "hello 👋")]
        # Its AgentFailure fails the execution with its reason, at once (not retried).
        refused = client.create_agent_execution(agent="reviewer", message="refuse")
        failed = client.wait_for_phase(refused.id, [Phase.COMPLETED, Phase.FAILED], timeout=60)
        assert failed.phase is Phase.FAILED and failed.error == "the custom runner refuses", failed.error


@pytest.mark.usefixtures("importable")
def test_a_name_from_an_installed_entry_point_through_the_environment(
    stigmer_server_factory, monkeypatch, tmp_path: Path
) -> None:
    info = tmp_path / "site" / "acme_runners-1.0.dist-info"  # what `pip install acme-runners` leaves
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-runners\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{GROUP}]\nacme = {RUNNER}\n")
    monkeypatch.setenv("PYTHONPATH", python_path(tmp_path / "site"))
    monkeypatch.setenv("STIGMER_AGENT_RUNNER", "acme")
    server = stigmer_server_factory(temporal=f"127.0.0.1:{free_port()}")  # Temporal need not be up for this
    assert f"Agent runner: acme ({RUNNER})\n" in server.log()


def start(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            stigmer_binary(),
            "server",
            "start",
            "--data-dir",
            str(tmp_path / "data"),
            "--address",
            f"127.0.0.1:{free_port()}",
            "--temporal-host-port",
            f"127.0.0.1:{free_port()}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
    )


@pytest.mark.usefixtures("importable")
def test_a_bad_agent_runner_exits_78_with_one_line(tmp_path: Path) -> None:
    cases = {
        "nosuch_runner_module:Runner": "no module named 'nosuch_runner_module'",
        "tests.support.custom_runner:Nope": "has no attribute 'Nope'",
        "tests.support.custom_runner:NoRun": "which has no run() method",
        "tests.support.custom_runner:SyncRun": "run() must be a coroutine method",
        "tests.support.custom_runner:BreaksAtStart": "BreaksAtStart() failed: RuntimeError: boom",
        "no-such-name": "no runner of that name in the entry point group stigmer.agent_runners (known: echo",
        "mod:": "must look like module:attr",
    }
    runs = [(setting, start(tmp_path, "--agent-runner", setting)) for setting in cases]
    runs.append(("nosuch", start(tmp_path, env={"STIGMER_AGENT_RUNNER": "nosuch_runner_module:Runner"})))
    cases["nosuch"] = f"{SETTING} 'nosuch_runner_module:Runner': no module named"
    for setting, result in runs:
        assert result.returncode == ExitCode.CONFIG, (setting, result.stdout, result.stderr)
        lines = [line for line in result.stderr.splitlines() if SETTING in line]
        assert len(lines) == 1 and "[ERROR]" in lines[0] and cases[setting] in lines[0], (setting, result.stderr)
        assert "Traceback" not in result.stderr, result.stderr
        assert "Stigmer Server started" not in result.stderr and "Store:" not in result.stderr, result.stderr
