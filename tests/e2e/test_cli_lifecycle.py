"""Cancel, delete, request ids and list filters from the command line, as a user runs them: the
installed `stigmer` console script against a real `stigmer server start` process and a real
Temporal dev server. Every new command and flag runs at least once, in text and -o json, and
each command's bad input is a usage error (exit 2) that never reaches the server.
"""

from __future__ import annotations

import getpass
import json
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest

from stigmer.temporal import names
from stigmer.temporal.agents import DELAY_ENV
from stigmer.testing.eventually import wait_until
from stigmer.testing.server import CliResult, StigmerServerProcess

pytestmark = pytest.mark.temporal

ME = f"{getpass.getuser()}@{socket.gethostname()}"
SLOW = f"{DELAY_ENV}=60"  # the echo agent takes a minute: long enough to be cancelled mid-run
NAPPING = {
    "name": "napping",
    "tasks": [
        {"name": "greet", "kind": "set", "values": {"greeting": "hello"}},
        {"name": "nap", "kind": "wait", "seconds": 60},
        {"name": "ask", "kind": "agent", "agent": "echo", "message": "${greeting}"},
    ],
}
QUICK = {"name": "quick", "tasks": [{"name": "greet", "kind": "set", "values": {"greeting": "hello"}}]}


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


def as_json(result: CliResult, code: int = 0) -> Any:
    assert result.code == code, result.text
    return json.loads(result.out)


def created(server: StigmerServerProcess, *args: str) -> str:
    record = as_json(server.cli(*args, "-o", "json"))
    assert uuid.UUID(record["request_id"]), record  # a fresh request id per run, shown with -o json
    return str(record["id"])


def phase_of(server: StigmerServerProcess, group: str, execution_id: str) -> str:
    return str(as_json(server.cli(group, "get", execution_id, "-o", "json"))["phase"])


def until_running(server: StigmerServerProcess, group: str, execution_id: str) -> None:
    wait_until(
        lambda: phase_of(server, group, execution_id) == "IN_PROGRESS",
        timeout=30,
        interval=0.2,
        what=f"{execution_id} to run",
    )


def test_agent_executions_cancel_delete_request_ids_and_filters(server: StigmerServerProcess) -> None:
    # --request-id: a create run twice with the same UUID makes one execution; another body is refused.
    mine = str(uuid.uuid4())
    first = server.cli("agent-execution", "create", "--agent", "echo", "--message", "once", "--request-id", mine)
    assert first.code == 0 and first.out.startswith("✅ Created: aex-"), first.text
    execution_id = first.out.split()[2]
    again = as_json(
        server.cli(
            "agent-execution", "create", "--agent", "echo", "--message", "once", "--request-id", mine, "-o", "json"
        )
    )
    assert (again["id"], again["request_id"]) == (execution_id, mine)
    other = server.cli("agent-execution", "create", "--agent", "echo", "--message", "other", "--request-id", mine)
    assert other.code == 1 and "Code: ALREADY_EXISTS" in other.err and execution_id in other.err, other.text
    wait_until(lambda: phase_of(server, "agent-execution", execution_id) == "COMPLETED", timeout=30, interval=0.2)

    # cancel --reason --wait: follows the running agent to CANCELLED, then shows who and why.
    slow = created(server, "agent-execution", "create", "--agent", "echo", "--message", "slow", "-e", SLOW)
    until_running(server, "agent-execution", slow)
    stopped = server.cli("agent-execution", "cancel", slow, "--reason", "too slow", "--wait", "--timeout", "30")
    assert stopped.code == 0, stopped.text + server.log()[-3000:]
    lines = stopped.out.splitlines()
    assert lines[0] == f"🚫 Cancel requested: {slow} (by {ME}: too slow)", stopped.out
    assert "🚫 CANCELLED" in lines and f"{slow}  🚫 CANCELLED  agent=echo" in lines, stopped.out
    assert any(line.startswith(f"  cancelled by {ME} (asked ") and line.endswith(": too slow") for line in lines)
    assert server.cli("agent-execution", "cancel", slow).code == 1  # CANCELLED is final: FAILED_PRECONDITION

    # cancel -o json (no wait): the record with the request, still running; --wait -o json: the final record.
    asked = created(server, "agent-execution", "create", "--agent", "echo", "--message", "slow", "-e", SLOW)
    until_running(server, "agent-execution", asked)
    record = as_json(server.cli("agent-execution", "cancel", asked, "-o", "json"))
    assert record["cancel_requested_at"] and record["cancelled_by"] == ME and record["id"] == asked
    waited = created(server, "agent-execution", "create", "--agent", "echo", "--message", "slow", "-e", SLOW)
    until_running(server, "agent-execution", waited)
    final = as_json(server.cli("agent-execution", "cancel", waited, "--wait", "-o", "json"))
    assert final["phase"] == "CANCELLED" and final["cancel_reason"] == ""

    # delete: a finished one, twice; a running one needs --force.
    deleted = server.cli("agent-execution", "delete", execution_id)
    assert (deleted.code, deleted.out) == (0, f"🗑️  Deleted: {execution_id} (COMPLETED)\n"), deleted.text
    twice = server.cli("agent-execution", "delete", execution_id)
    assert twice.code == 1 and "Code: NOT_FOUND" in twice.err, twice.text
    running = created(server, "agent-execution", "create", "--agent", "echo", "--message", "slow", "-e", SLOW)
    until_running(server, "agent-execution", running)
    refused = server.cli("agent-execution", "delete", running)
    assert refused.code == 1 and "Code: FAILED_PRECONDITION" in refused.err, refused.text
    forced = as_json(server.cli("agent-execution", "delete", running, "--force", "-o", "json", timeout=60))
    assert forced["id"] == running and forced["phase"] == "CANCELLED"

    # list --agent --created-after (ISO 8601, and how long ago).
    since = as_json(server.cli("agent-execution", "get", slow, "-o", "json"))["created_at"]
    later = as_json(server.cli("agent-execution", "list", "--agent", "echo", "--created-after", since, "-o", "json"))
    assert [e["id"] for e in later["executions"]] == [waited, asked]  # running was deleted; slow is not after itself
    recent = server.cli("agent-execution", "list", "--agent", "echo", "--created-after", "10m")
    assert [line.split()[0] for line in recent.out.splitlines()[1:]] == [waited, asked, slow], recent.text
    assert server.cli("agent-execution", "list", "--agent", "nobody").out == "No agent executions.\n"

    # Bad input never reaches the server.
    for args in (
        ["agent-execution", "cancel", "aex-nope"],
        ["agent-execution", "delete", "wex-01JF8ZQ5W3K7N2C4R6T8V0XBYD"],
        ["agent-execution", "create", "--agent", "echo", "--message", "m", "--request-id", "not-a-uuid"],
        ["agent-execution", "list", "--created-after", "last tuesday"],
    ):
        bad = server.cli(*args)
        assert bad.code == 2 and "Error: Invalid value" in bad.err and "Traceback" not in bad.text, (args, bad.text)


def test_workflows_and_their_executions_cancel_delete_and_filters(server: StigmerServerProcess, tmp_path: Path) -> None:
    napping, quick = tmp_path / "napping.json", tmp_path / "quick.json"
    napping.write_text(json.dumps(NAPPING))
    quick.write_text(json.dumps(QUICK))
    mine = str(uuid.uuid4())
    stored = server.cli("workflow", "create", "-f", str(napping), "--request-id", mine)
    assert stored.code == 0 and stored.out.startswith("✅ Created: wf-"), stored.text
    workflow_id = stored.out.split()[2]
    retried = as_json(server.cli("workflow", "create", "-f", str(napping), "--request-id", mine, "-o", "json"))
    assert (retried["id"], retried["request_id"]) == (workflow_id, mine)  # the same workflow, not ALREADY_EXISTS
    assert created(server, "workflow", "create", "-f", str(quick)).startswith("wf-")

    # cancel --wait: the running wait task becomes CANCELLED, the agent step it never reached SKIPPED.
    run_id = str(uuid.uuid4())
    first = as_json(
        server.cli("workflow-execution", "create", "--workflow", "napping", "--request-id", run_id, "-o", "json")
    )
    again = server.cli("workflow-execution", "create", "--workflow", workflow_id, "--request-id", run_id)
    assert again.code == 0 and again.out == f"✅ Created: {first['id']}\n", again.text
    sleeper = first["id"]
    until_running(server, "workflow-execution", sleeper)
    stopped = server.cli("workflow-execution", "cancel", sleeper, "--reason", "enough", "--wait")
    assert stopped.code == 0, stopped.text + server.log()[-3000:]
    assert stopped.out.splitlines()[0] == f"🚫 Cancel requested: {sleeper} (by {ME}: enough)", stopped.out
    for part in ("🚫 nap (wait): CANCELLED", "⏭️  ask (agent): SKIPPED", "🚫 CANCELLED", f"  cancelled by {ME} (asked "):
        assert part in stopped.out, stopped.out

    # cancel -o json; delete of a running one needs --force; a workflow with a running execution stays.
    other = created(server, "workflow-execution", "create", "--workflow", "napping")
    until_running(server, "workflow-execution", other)
    in_use = server.cli("workflow", "delete", "napping")
    assert in_use.code == 1 and "Code: FAILED_PRECONDITION" in in_use.err, in_use.text
    refused = server.cli("workflow-execution", "delete", other)
    assert refused.code == 1 and "Code: FAILED_PRECONDITION" in refused.err, refused.text
    asked = as_json(server.cli("workflow-execution", "cancel", other, "-o", "json"))
    assert asked["cancel_requested_at"] and asked["cancelled_by"] == ME
    wait_until(lambda: phase_of(server, "workflow-execution", other) == "CANCELLED", timeout=30, interval=0.2)
    third = created(server, "workflow-execution", "create", "--workflow", "napping")
    until_running(server, "workflow-execution", third)
    forced = as_json(server.cli("workflow-execution", "delete", third, "--force", "-o", "json", timeout=60))
    assert forced["id"] == third and forced["phase"] == "CANCELLED"

    # list --workflow --created-after.
    done = created(server, "workflow-execution", "create", "--workflow", "quick")
    wait_until(lambda: phase_of(server, "workflow-execution", done) == "COMPLETED", timeout=30, interval=0.2)
    mine_only = as_json(server.cli("workflow-execution", "list", "--workflow", "napping", "-o", "json"))
    assert [e["id"] for e in mine_only["executions"]] == [other, sleeper]
    since = as_json(server.cli("workflow-execution", "get", sleeper, "-o", "json"))["created_at"]
    table = server.cli("workflow-execution", "list", "--created-after", since)
    assert [line.split()[:2] for line in table.out.splitlines()[1:]] == [[done, "COMPLETED"], [other, "CANCELLED"]]
    recent = as_json(
        server.cli("workflow-execution", "list", "--workflow", "quick", "--created-after", "1h", "-o", "json")
    )
    assert [e["id"] for e in recent["executions"]] == [done]

    # delete: executions, then the workflows (by name, and by id with -o json); twice is NOT_FOUND.
    deleted = server.cli("workflow-execution", "delete", sleeper)
    assert (deleted.code, deleted.out) == (0, f"🗑️  Deleted: {sleeper} (CANCELLED)\n"), deleted.text
    gone = server.cli("workflow", "delete", "napping")
    assert (gone.code, gone.out) == (0, f"🗑️  Deleted: {workflow_id} (napping)\n"), gone.text
    assert as_json(server.cli("workflow", "delete", "quick", "-o", "json"))["name"] == "quick"
    twice = server.cli("workflow", "delete", workflow_id, "-o", "json")
    assert as_json(twice, code=1)["error"]["code"] == "NOT_FOUND"
    kept = as_json(server.cli("workflow-execution", "get", done, "-o", "json"))
    assert kept["phase"] == "COMPLETED"  # a deleted workflow's finished executions are kept

    for args in (
        ["workflow-execution", "cancel", "aex-01JF8ZQ5W3K7N2C4R6T8V0XBYD"],
        ["workflow-execution", "delete", "not-an-id"],
        ["workflow-execution", "create", "--workflow", "quick", "--request-id", "123"],
        ["workflow-execution", "list", "--created-after", "soon"],
        ["workflow", "create", "-f", str(quick), "--request-id", "x"],
    ):
        bad = server.cli(*args)
        assert bad.code == 2 and "Error: Invalid value" in bad.err and "Traceback" not in bad.text, (args, bad.text)
    missing = server.cli("workflow", "delete")
    assert missing.code == 2 and "Missing argument 'NAME_OR_ID'" in missing.err, missing.text
