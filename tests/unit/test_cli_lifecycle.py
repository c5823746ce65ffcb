"""cancel, delete, --request-id and the list filters through click's CliRunner, against the real
in-process server of test_cli (Temporal is a port nobody listens on): what a PENDING execution
allows without Temporal (cancel, delete --force), the refusals and their exit codes, the filters on
records seeded into its store, and the bad input that never reaches the server (exit 2).

Cancelling a running execution for real is tests/e2e/test_cli_lifecycle.py's job.
"""

from __future__ import annotations

import getpass
import json
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
import pytest
from click.testing import Result

from stigmer.api import agent_execution_pb2, common_pb2
from stigmer.cli import render
from stigmer.cli.lifecycle import _When
from stigmer.store import Message, Store
from stigmer.testing.ports import free_port
from tests.unit.test_cli import EXAMPLE, TASKS, UNAVAILABLE_LINES, InProcessServer, run

pytestmark = pytest.mark.timeout(60)
ME = f"{getpass.getuser()}@{socket.gethostname()}"
NOBODY = "aex-01JF8ZQ5W3K7N2C4R6T8V0XBYD"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    srv = InProcessServer(tmp_path_factory.mktemp("cli-lifecycle"))
    try:
        yield srv.start()
    finally:
        srv.stop()


def at(server: InProcessServer, *args: str) -> Result:
    return run(*args, "--address", server.address)


def finished(store: Store, agent: str, **kwargs: str) -> str:
    record = store.create_agent_execution(agent=agent, message="hi", **kwargs)
    store.mark_agent_execution_started(record.id)
    store.complete_agent_execution(record.id, replies=[Message(role="agent", text="[echo] hi", at=0.0)])
    return record.id


# ------------------------------------------------------------------------------ agent executions


def test_cancel_a_pending_agent_execution_without_temporal(server: InProcessServer) -> None:
    pending = server.store.create_agent_execution(agent="cancel-me", message="hi")
    result = at(server, "agent-execution", "cancel", pending.id, "--reason", "not needed")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"🚫 Cancelled: {pending.id} (by {ME}: not needed)\n"
    shown = at(server, "agent-execution", "get", pending.id)
    assert f"  cancelled by {ME} (asked " in shown.stdout and shown.stdout.rstrip().endswith(": not needed")
    assert "error:" not in shown.stdout  # it only repeats who and why
    record = json.loads(at(server, "agent-execution", "get", pending.id, "-o", "json").stdout)
    assert (record["phase"], record["cancelled_by"], record["cancel_reason"]) == ("CANCELLED", ME, "not needed")
    again = at(server, "agent-execution", "cancel", pending.id)
    assert again.exit_code == 1 and "Code: FAILED_PRECONDITION" in again.stderr, again.output
    assert "CANCELLED" in again.stderr


def test_cancel_wait_of_a_pending_one_prints_the_final_record(server: InProcessServer) -> None:
    pending = server.store.create_agent_execution(agent="cancel-wait", message="hi")
    result = at(server, "agent-execution", "cancel", pending.id, "--wait")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"🚫 Cancelled: {pending.id} (by {ME})"
    assert lines[1].startswith(f"{pending.id}  🚫 CANCELLED  agent=cancel-wait")
    as_json = json.loads(at(server, "agent-execution", "get", pending.id, "-o", "json").stdout)
    assert as_json["cancel_requested_at"] and as_json["cancel_reason"] == ""


def test_cancel_json_and_a_running_one_needs_temporal(server: InProcessServer) -> None:
    pending = server.store.create_agent_execution(agent="cancel-json", message="hi")
    record = json.loads(at(server, "agent-execution", "cancel", pending.id, "-o", "json", "--wait").stdout)
    assert record["id"] == pending.id and record["phase"] == "CANCELLED" and record["cancelled_by"] == ME
    running = server.store.create_agent_execution(agent="cancel-running", message="hi")
    server.store.mark_agent_execution_started(running.id)
    refused = at(server, "agent-execution", "cancel", running.id)
    assert refused.exit_code == 75 and refused.stderr.splitlines()[:2] == UNAVAILABLE_LINES, refused.output
    shown = json.loads(at(server, "agent-execution", "get", running.id, "-o", "json").stdout)
    assert shown["phase"] == "IN_PROGRESS" and shown["cancelled_by"] == ""  # UNAVAILABLE: nothing changed


def test_delete_agent_executions(server: InProcessServer) -> None:
    done = finished(server.store, "delete-me")
    result = at(server, "agent-execution", "delete", done)
    assert (result.exit_code, result.stdout) == (0, f"🗑️  Deleted: {done} (COMPLETED)\n"), result.output
    twice = at(server, "agent-execution", "delete", done)
    assert twice.exit_code == 1 and twice.stderr.splitlines()[-1] == "Code: NOT_FOUND", twice.output
    pending = server.store.create_agent_execution(agent="delete-me", message="hi")
    refused = at(server, "agent-execution", "delete", pending.id)
    assert refused.exit_code == 1 and "Code: FAILED_PRECONDITION" in refused.stderr, refused.output
    assert "force" in refused.stderr
    forced = json.loads(at(server, "agent-execution", "delete", pending.id, "--force", "-o", "json").stdout)
    assert forced["id"] == pending.id and forced["phase"] == "CANCELLED"  # PENDING: cancelled here, no Temporal
    gone = at(server, "agent-execution", "get", pending.id, "-o", "json")
    assert gone.exit_code == 1 and json.loads(gone.stdout)["error"]["code"] == "NOT_FOUND"


def test_list_agent_executions_by_agent_parent_and_time(server: InProcessServer) -> None:
    store = server.store
    workflow = store.create_workflow(name="parent-flow", document=EXAMPLE.read_text(), valid=True)
    parent = store.create_workflow_execution(workflow=workflow, input="", task_names_kinds=TASKS)
    first = finished(store, "lister")
    step = finished(store, "lister", parent_id=parent.id)
    finished(store, "someone-else")
    by_agent = json.loads(at(server, "agent-execution", "list", "--agent", "lister", "-o", "json").stdout)
    assert [e["id"] for e in by_agent["executions"]] == [step, first]
    by_parent = at(server, "agent-execution", "list", "--parent", parent.id)
    assert [line.split()[0] for line in by_parent.stdout.splitlines()[1:]] == [step], by_parent.output
    since = json.loads(at(server, "agent-execution", "get", first, "-o", "json").stdout)["created_at"]
    after = at(server, "agent-execution", "list", "--agent", "lister", "--created-after", since, "-o", "json")
    assert [e["id"] for e in json.loads(after.stdout)["executions"]] == [step], after.output  # strictly after
    recent = at(server, "agent-execution", "list", "--agent", "lister", "--created-after", "10m", "-o", "json")
    assert len(json.loads(recent.stdout)["executions"]) == 2
    future = at(server, "agent-execution", "list", "--created-after", "2999-01-01T00:00:00Z")
    assert (future.exit_code, future.stdout) == (0, "No agent executions.\n")
    paged = json.loads(
        at(server, "agent-execution", "list", "--agent", "lister", "--page-size", "1", "-o", "json").stdout
    )
    rest = at(server, "agent-execution", "list", "--agent", "lister", "--page-token", paged["next_page_token"])
    assert [line.split()[0] for line in rest.stdout.splitlines()[1:]] == [first], rest.output


def test_create_with_a_request_id_still_needs_temporal(server: InProcessServer) -> None:
    mine = str(uuid.uuid4())
    result = at(server, "agent-execution", "create", "--agent", "a", "--message", "m", "--request-id", mine)
    assert result.exit_code == 75 and result.stderr.splitlines()[:2] == UNAVAILABLE_LINES, result.output
    flow = at(server, "workflow-execution", "create", "--workflow", "parent-flow", "--request-id", mine, "-o", "json")
    assert flow.exit_code == 75 and json.loads(flow.stdout)["error"]["code"] == "UNAVAILABLE", flow.output
    workflow = run("workflow", "create", "-f", str(EXAMPLE), "--request-id", mine, "--address", server.address)
    assert workflow.exit_code == 75, workflow.output


# ------------------------------------------------------------------------------ workflow executions and workflows


def test_cancel_and_delete_a_pending_workflow_execution(server: InProcessServer) -> None:
    store = server.store
    workflow = store.create_workflow(name="wex-lifecycle", document=EXAMPLE.read_text(), valid=True)
    pending = store.create_workflow_execution(workflow=workflow, input="", task_names_kinds=TASKS)
    refused = at(server, "workflow", "delete", "wex-lifecycle")
    assert refused.exit_code == 1 and "Code: FAILED_PRECONDITION" in refused.stderr, refused.output
    not_yet = at(server, "workflow-execution", "delete", pending.id)
    assert not_yet.exit_code == 1 and "Code: FAILED_PRECONDITION" in not_yet.stderr, not_yet.output
    result = at(server, "workflow-execution", "cancel", pending.id, "--reason", "stop", "--wait")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"🚫 Cancelled: {pending.id} (by {ME}: stop)"
    assert f"  cancelled by {ME} (asked " in result.stdout
    assert "  - compose (set): SKIPPED" in result.stdout, result.stdout
    deleted = at(server, "workflow-execution", "delete", pending.id)
    assert (deleted.exit_code, deleted.stdout) == (0, f"🗑️  Deleted: {pending.id} (CANCELLED)\n"), deleted.output
    again = at(server, "workflow-execution", "delete", pending.id, "-o", "json")
    assert again.exit_code == 1 and json.loads(again.stdout)["error"]["code"] == "NOT_FOUND"
    gone = at(server, "workflow", "delete", "wex-lifecycle")
    assert (gone.exit_code, gone.stdout) == (0, f"🗑️  Deleted: {workflow.id} (wex-lifecycle)\n"), gone.output
    twice = at(server, "workflow", "delete", workflow.id, "-o", "json")
    assert twice.exit_code == 1 and json.loads(twice.stdout)["error"]["code"] == "NOT_FOUND"


def test_force_delete_and_json_cancel_of_workflow_executions(server: InProcessServer) -> None:
    store = server.store
    workflow = store.create_workflow(name="wex-force", document=EXAMPLE.read_text(), valid=True)
    one, two = (store.create_workflow_execution(workflow=workflow, input="", task_names_kinds=TASKS) for _ in "12")
    record = json.loads(at(server, "workflow-execution", "cancel", one.id, "-o", "json").stdout)
    assert record["phase"] == "CANCELLED" and [t["status"] for t in record["tasks"]] == ["SKIPPED"] * 3
    forced = json.loads(at(server, "workflow-execution", "delete", two.id, "--force", "-o", "json").stdout)
    assert forced["id"] == two.id and forced["phase"] == "CANCELLED"
    assert json.loads(at(server, "workflow", "delete", "wex-force", "-o", "json").stdout)["id"] == workflow.id


def test_list_workflow_executions_by_workflow_and_time(server: InProcessServer) -> None:
    store = server.store
    mine = store.create_workflow(name="wex-listed", document=EXAMPLE.read_text(), valid=True)
    other = store.create_workflow(name="wex-other", document=EXAMPLE.read_text(), valid=True)
    runs = [store.create_workflow_execution(workflow=mine, input="", task_names_kinds=TASKS) for _ in "12"]
    store.create_workflow_execution(workflow=other, input="", task_names_kinds=TASKS)
    by_name = at(server, "workflow-execution", "list", "--workflow", "wex-listed")
    assert [line.split()[0] for line in by_name.stdout.splitlines()[1:]] == [runs[1].id, runs[0].id], by_name.output
    by_id = json.loads(at(server, "workflow-execution", "list", "--workflow", mine.id, "-o", "json").stdout)
    assert [e["id"] for e in by_id["executions"]] == [runs[1].id, runs[0].id]
    since = json.loads(at(server, "workflow-execution", "get", runs[0].id, "-o", "json").stdout)["created_at"]
    later = at(server, "workflow-execution", "list", "--workflow", "wex-listed", "--created-after", since, "-o", "json")
    assert [e["id"] for e in json.loads(later.stdout)["executions"]] == [runs[1].id], later.output
    none = at(server, "workflow-execution", "list", "--workflow", "nothing-like-it")
    assert (none.exit_code, none.stdout) == (0, "No workflow executions.\n")


# ------------------------------------------------------------------------------ bad input: exit 2, nothing sent


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["agent-execution", "cancel", "nope"], "Invalid value for 'ID': must be 'aex-' followed by a 26-character"),
        (["agent-execution", "delete", "wex-01JF8ZQ5W3K7N2C4R6T8V0XBYD"], "`stigmer workflow-execution delete`"),
        (["workflow-execution", "cancel", NOBODY], "`stigmer agent-execution cancel`"),
        (["workflow-execution", "delete", "wex-short"], "must be 'wex-' followed by"),
        (["agent-execution", "create", "--agent", "a", "--message", "m", "--request-id", "42"], "not a valid UUID"),
        (["workflow", "create", "-f", str(EXAMPLE), "--request-id", "x"], "'--request-id'"),
        (["workflow-execution", "create", "--workflow", "w", "--request-id", "x"], "'--request-id'"),
        (["agent-execution", "list", "--created-after", "yesterday"], "expected an ISO 8601 time"),
        (["agent-execution", "list", "--created-after", "90"], "how long ago like 10m"),
        (["workflow-execution", "list", "--created-after", "2026-13-01"], "'--created-after'"),
        (["workflow", "delete"], "Missing argument 'NAME_OR_ID'"),
    ],
)
def test_bad_input_is_a_usage_error(args: list[str], says: str) -> None:
    result = run(*args, "--address", f"127.0.0.1:{free_port()}")
    assert result.exit_code == 2, result.output
    assert says in result.stderr and "Traceback" not in result.output, result.stderr


def test_an_unreachable_server_exits_69_for_the_new_commands(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    for args in (
        ["agent-execution", "cancel", NOBODY, "--wait"],
        ["agent-execution", "delete", NOBODY, "--force"],
        ["workflow-execution", "cancel", "wex-01JF8ZQ5W3K7N2C4R6T8V0XBYD"],
        ["workflow-execution", "delete", "wex-01JF8ZQ5W3K7N2C4R6T8V0XBYD"],
        ["workflow", "delete", "w"],
    ):
        result = run(*args, "--address", address)
        assert result.exit_code == 69, (args, result.output)
        assert result.stderr.startswith(f"❌ Error: cannot reach the stigmer server at {address}"), result.stderr


# ------------------------------------------------------------------------------ parsing and rendering


def test_created_after_reads_iso_times_and_durations_ago() -> None:
    when = _When()
    assert when.convert("2026-12-04T10:00:00Z", None, None) == datetime(2026, 12, 4, 10, tzinfo=UTC)
    assert when.convert("2026-12-04T11:00:00+01:00", None, None) == datetime(2026, 12, 4, 10, tzinfo=UTC)
    local = when.convert("2026-12-04T10:00:00", None, None)
    assert local.tzinfo is not None and local == datetime(2026, 12, 4, 10).astimezone()  # naive: local time
    for text, ago in (("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1.5m", 90)):
        expected = datetime.now(UTC) - timedelta(seconds=ago)
        assert abs((when.convert(text, None, None) - expected).total_seconds()) < 5, text
    with pytest.raises(click.BadParameter):
        when.convert("0m", None, None)


def cancelled_record(phase: str, **fields: str) -> agent_execution_pb2.AgentExecution:
    record = agent_execution_pb2.AgentExecution(
        id=NOBODY, agent="echo", phase=common_pb2.ExecutionPhase.Value(phase), **fields
    )
    record.cancel_requested_at.FromSeconds(1_800_000_000)
    return record


def test_the_cancellation_line_says_who_why_and_how_it_ended() -> None:
    done = cancelled_record(
        "CANCELLED", cancelled_by="ada@box", cancel_reason="late", error="cancelled by ada@box: late"
    )
    assert render.cancellation(done) == [
        f"  cancelled by ada@box (asked {render.clock(done.cancel_requested_at)}): late"
    ]
    assert "error:" not in render.agent_execution(done)
    stopping = cancelled_record("IN_PROGRESS", cancelled_by="ada@box")
    assert render.cancellation(stopping)[0].endswith("; stopping")
    first = cancelled_record("COMPLETED", cancelled_by="ada@box")
    assert render.cancellation(first)[0].endswith("; it finished COMPLETED first")
    with_parent = cancelled_record("CANCELLED", cancelled_by="ada@box", error="cancelled with workflow execution wex-1")
    assert render.agent_execution(with_parent).endswith("  error:  cancelled with workflow execution wex-1")
    assert render.cancellation(agent_execution_pb2.AgentExecution(id=NOBODY)) == []
