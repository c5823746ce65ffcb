"""Workflows from the command line, as a user runs them: the installed `stigmer` console script
against a real `stigmer server start` process and a real Temporal dev server.

The example document users copy (examples/hello-workflow.json) is the one run here: validate it,
create it, run it with --follow, read it back; an invalid document and a failing run show their
errors and exit 1.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from stigmer.temporal import names
from stigmer.testing.server import CliResult, StigmerServerProcess, stigmer_binary

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello-workflow.json"
# tasks[0].values.greeting refers to a key nobody sets; tasks[1].seconds is out of range.
BROKEN = {
    "name": "broken-workflow",
    "tasks": [
        {"name": "greet", "kind": "set", "values": {"greeting": "Hello ${nobody}"}},
        {"name": "nap", "kind": "wait", "seconds": 100000},
    ],
}


@pytest.fixture
def server(temporal, stigmer_server_factory, monkeypatch: pytest.MonkeyPatch) -> StigmerServerProcess:
    """A server on the session's Temporal, with task queues of its own (the dev server is shared)."""
    suffix = uuid.uuid4().hex[:10]
    for env in (
        names.AGENT_EXECUTION_QUEUE_ENV,
        names.WORKFLOW_EXECUTION_QUEUE_ENV,
        names.WORKFLOW_VALIDATION_QUEUE_ENV,
    ):
        monkeypatch.setenv(env, f"{env.lower()}-{suffix}")
    srv: StigmerServerProcess = stigmer_server_factory(temporal=temporal.address)
    ready = srv.cli("server", "wait", "--timeout", "30", timeout=40)
    assert ready.code == 0, ready.text + srv.log()[-3000:]
    return srv


def created_id(result: CliResult, prefix: str) -> str:
    first = result.out.splitlines()[0]
    assert first.startswith(f"✅ Created: {prefix}-"), result.text
    return first.removeprefix("✅ Created: ").split()[0]


def in_order(text: str, *parts: str) -> None:
    positions = [text.find(part) for part in parts]
    assert -1 not in positions and positions == sorted(positions), f"expected in order {parts} in:\n{text}"


@pytest.mark.temporal
def test_hello_workflow_from_the_command_line(server: StigmerServerProcess, tmp_path: Path) -> None:
    valid = server.cli("workflow", "validate", "-f", str(EXAMPLE))
    assert (valid.code, valid.out) == (0, "✅ Valid\n"), valid.text

    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(BROKEN))
    invalid = server.cli("workflow", "validate", "-f", str(broken))
    assert invalid.code == 1, invalid.text
    assert invalid.out.splitlines() == [
        "❌ Invalid: 2 errors:",
        "  tasks[0].values.greeting: reference '${nobody}' does not resolve: 'nobody' is not set by an earlier set "
        "task (references name input.*, an earlier set key, or tasks.<earlier task>.output)",
        "  tasks[1].seconds: 100000 is out of range (0 to 86400)",
    ], invalid.text
    assert server.cli("workflow", "list", "-o", "json").out.count('"id"') == 0  # validate never stores

    first = server.cli("workflow", "create", "-f", str(EXAMPLE))
    workflow_id = created_id(first, "wf")
    assert first.code == 0 and first.out == f"✅ Created: {workflow_id} (hello-workflow)\n", first.text
    again = server.cli("workflow", "create", "-f", str(EXAMPLE))
    assert again.code == 1 and "Code: ALREADY_EXISTS" in again.err, again.text

    stored_invalid = server.cli("workflow", "create", "-f", str(broken))
    assert stored_invalid.code == 1, stored_invalid.text
    assert stored_invalid.out.startswith("❌ Invalid: stored as wf-"), stored_invalid.text
    assert "  tasks[1].seconds: 100000 is out of range" in stored_invalid.out
    refused = server.cli("workflow-execution", "create", "--workflow", "broken-workflow")
    assert refused.code == 1 and "Code: FAILED_PRECONDITION" in refused.err, refused.text

    shown = server.cli("workflow", "get", "hello-workflow")
    assert shown.code == 0 and shown.out.startswith(f"{workflow_id}  hello-workflow  ✅ valid"), shown.text
    assert server.cli("workflow", "get", workflow_id, "--document").out == EXAMPLE.read_text()
    listing = server.cli("workflow", "list")
    assert listing.code == 0 and "hello-workflow" in listing.out and "broken-workflow" in listing.out, listing.text

    run = server.cli(
        "workflow-execution", "create", "--workflow", "hello-workflow", "--input", '{"user": "Ada"}', "--follow"
    )
    assert run.code == 0, run.text + server.log()[-3000:]
    execution_id = created_id(run, "wex")
    in_order(
        run.out,
        "✅ Created: wex-",
        "⚙️  IN_PROGRESS",
        "compose (set): RUNNING",
        "compose (set): COMPLETED",
        "pause (wait): COMPLETED",
        "ask (agent): COMPLETED",
        "✅ COMPLETED",
        f"{execution_id}  ✅ COMPLETED",
    )

    record = json.loads(server.cli("workflow-execution", "get", execution_id, "-o", "json").out)
    assert record["phase"] == "COMPLETED" and record["workflow_id"] == workflow_id, record
    assert [t["status"] for t in record["tasks"]] == ["COMPLETED"] * 3
    assert json.loads(record["tasks"][2]["output"]) == ["[echo] Hello, Ada! Please pass this on in a cheerful voice."]
    assert json.loads(record["output"])["greeting"] == "Hello, Ada!"
    assert server.cli("workflow-execution", "watch", execution_id).code == 0

    # No input: ${input.user} cannot resolve, so the first task fails and the rest are skipped.
    empty = tmp_path / "input.json"
    empty.write_text("{}")
    failing = server.cli(
        "workflow-execution", "create", "--workflow", workflow_id, "--input-file", str(empty), "--follow"
    )
    assert failing.code == 1, failing.text
    failed_id = created_id(failing, "wex")
    in_order(
        failing.out,
        "❌ compose (set): FAILED",
        "⏭️  pause (wait): SKIPPED",
        "⏭️  ask (agent): SKIPPED",
        "❌ FAILED",
        "error:  task 'compose' failed",
    )

    completed = json.loads(server.cli("workflow-execution", "list", "--phase", "COMPLETED", "-o", "json").out)
    assert [e["id"] for e in completed["executions"]] == [execution_id]
    table = server.cli("workflow-execution", "list")
    assert table.code == 0, table.text
    rows = {line.split()[0]: line.split()[1:4] for line in table.out.splitlines()[1:]}
    assert rows == {
        execution_id: ["COMPLETED", "hello-workflow", "3/3"],
        failed_id: ["FAILED", "hello-workflow", "0/3"],
    }


def test_bash_completion_script_from_the_console_script() -> None:
    """What a user puts in ~/.bashrc: eval "$(_STIGMER_COMPLETE=bash_source stigmer)"."""
    binary = stigmer_binary()
    script = f'eval "$(_STIGMER_COMPLETE=bash_source {binary})"; complete -p stigmer'
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "_stigmer_completion" in done.stdout, done.stdout
