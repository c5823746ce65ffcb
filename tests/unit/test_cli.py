"""The workflow and workflow-execution commands through click's CliRunner.

Two kinds of test. Without a server: argument parsing, help, completion scripts, and what an
unreachable server looks like. Against a real in-process server (the whole `StigmerServer` stack,
on its own event loop in a background thread, pointed at a Temporal port nobody listens on):
reads of records seeded straight into its store, the exact UNAVAILABLE lines and exit 75 for the
calls that need Temporal, and error mapping. Running workflows for real is tests/e2e's job.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from stigmer.api import common_pb2, workflow_execution_pb2
from stigmer.app import StigmerServer
from stigmer.cli import cli, render
from stigmer.config import Config
from stigmer.store import Phase, Store, TaskStatus, Workflow, WorkflowExecution
from stigmer.temporal.names import TaskQueues
from stigmer.testing.eventually import wait_until
from stigmer.testing.ports import free_port

pytestmark = pytest.mark.timeout(60)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "hello-workflow.json"
UNAVAILABLE_LINES = [
    "❌ Error: Temporal workflow engine is unavailable. Please try again later.",
    "Code: UNAVAILABLE",
]
OUR_GROUPS = ("workflow", "workflow-execution")
TASKS = [("compose", "set"), ("pause", "wait"), ("ask", "agent")]


def run(*args: str, input: str | bytes | None = None, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, env=env, prog_name="stigmer")


def all_commands(group: click.Group = cli, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from all_commands(command, (*path, name))
        else:
            yield (*path, name)


# ------------------------------------------------------------------------------ no server needed


@pytest.mark.parametrize("path", list(all_commands()), ids=lambda p: " ".join(p) or "stigmer")
def test_help_on_every_command(path: tuple[str, ...]) -> None:
    result = run(*path, "--help")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: stigmer"), result.output
    if path[:1] and path[0] in OUR_GROUPS:
        assert "Example" in result.output, f"`stigmer {' '.join(path)} --help` shows no example"
        if len(path) == 2:
            assert "--address" in result.output and "--timeout" in result.output and "-o, --output" in result.output


def test_completion_script_for_bash() -> None:
    result = run(env={"_STIGMER_COMPLETE": "bash_source"})
    assert result.exit_code == 0, result.output
    assert "_stigmer_completion" in result.output and "complete " in result.output, result.output


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_completion_script_for_other_shells(shell: str) -> None:
    result = run(env={"_STIGMER_COMPLETE": f"{shell}_source"})
    assert result.exit_code == 0 and "stigmer" in result.output, result.output


def complete(words: str, env: dict[str, str] | None = None) -> list[str]:
    """What bash completion offers for the last word of ``words`` (as the generated script asks)."""
    parts = words.split(" ")
    result = run(
        env={
            "_STIGMER_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(parts) - 1),
            **(env or {}),
        }
    )
    assert result.exit_code == 0, result.output
    return [line.split(",", 1)[1] for line in result.output.splitlines() if line]


def test_completion_of_commands_and_choices() -> None:
    assert complete("stigmer workflow-e") == ["workflow-execution"]
    assert complete("stigmer workflow v") == ["validate"]
    # Case-insensitive choice: click 8.4 completes "COMPLETED", click 8.5 "completed"; both are accepted.
    assert [c.upper() for c in complete("stigmer workflow-execution list --phase COMP")] == ["COMPLETED"]


def test_completion_without_a_server_offers_nothing() -> None:
    address = f"127.0.0.1:{free_port()}"
    assert complete("stigmer workflow get ", env={"STIGMER_SERVER_ADDRESS": address}) == []


UNREACHABLE_COMMANDS = [
    ["workflow", "create", "-f", str(EXAMPLE)],
    ["workflow", "validate", "-f", str(EXAMPLE)],
    ["workflow", "get", "hello-workflow"],
    ["workflow", "list"],
    ["workflow-execution", "create", "--workflow", "hello-workflow", "--input", '{"user": "Ada"}'],
    ["workflow-execution", "get", "wex-01J00000000000000000000000"],
    ["workflow-execution", "list", "--phase", "failed"],
    ["workflow-execution", "watch", "wex-01J00000000000000000000000"],
]


def test_unreachable_server_exits_69_and_names_the_address() -> None:
    address = f"127.0.0.1:{free_port()}"
    for args in UNREACHABLE_COMMANDS:
        result = run(*args, "--address", address)
        assert result.exit_code == 69, (args, result.output)
        assert result.stdout == "", (args, result.stdout)
        first, code = result.stderr.splitlines()[:2]
        assert first.startswith(f"❌ Error: cannot reach the stigmer server at {address}"), (args, first)
        assert "stigmer server start" in first and code == "Code: UNAVAILABLE", (args, result.stderr)


def test_unreachable_server_with_json_output() -> None:
    address = f"127.0.0.1:{free_port()}"
    for args in UNREACHABLE_COMMANDS[2:4]:
        result = run(*args, "--address", address, "-o", "json")
        assert result.exit_code == 69, result.output
        error = json.loads(result.stdout)["error"]
        assert error["code"] == "UNAVAILABLE" and address in error["message"], error


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("{bad", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('"Ada"', "must be a JSON object"),
        ("NaN-ish", "not valid JSON"),
    ],
)
def test_bad_input_json_is_a_usage_error_naming_the_option(value: str, says: str) -> None:
    result = run(
        "workflow-execution", "create", "--workflow", "w", "--input", value, "--address", f"127.0.0.1:{free_port()}"
    )
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--input'" in result.stderr and says in result.stderr, result.stderr


def test_bad_input_file_is_a_usage_error_naming_the_option(tmp_path: Path) -> None:
    bad = tmp_path / "input.json"
    bad.write_text("{'single': 'quotes'}")
    result = run("workflow-execution", "create", "--workflow", "w", "--input-file", str(bad))
    assert result.exit_code == 2 and "Invalid value for '--input-file'" in result.stderr, result.stderr
    piped = run("workflow-execution", "create", "--workflow", "w", "--input-file", "-", input="[]")
    assert piped.exit_code == 2 and "must be a JSON object" in piped.stderr, piped.stderr
    missing = run("workflow-execution", "create", "--workflow", "w", "--input-file", str(tmp_path / "nope.json"))
    assert missing.exit_code == 2 and "'--input-file'" in missing.stderr, missing.stderr


def test_input_and_input_file_together_is_a_usage_error(tmp_path: Path) -> None:
    good = tmp_path / "input.json"
    good.write_text("{}")
    result = run("workflow-execution", "create", "--workflow", "w", "--input", "{}", "--input-file", str(good))
    assert result.exit_code == 2 and "not both" in result.stderr, result.stderr


def test_document_file_problems_are_usage_errors(tmp_path: Path) -> None:
    missing = run("workflow", "create", "-f", str(tmp_path / "nope.json"))
    assert missing.exit_code == 2 and "'-f' / '--file'" in missing.stderr, missing.stderr
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes('{"name": "café"}'.encode("latin-1"))
    result = run("workflow", "validate", "-f", str(latin1))
    assert result.exit_code == 2 and "not UTF-8" in result.stderr and "'-f' / '--file'" in result.stderr, result.stderr
    no_file = run("workflow", "create")
    assert no_file.exit_code == 2 and "Missing option '-f' / '--file'" in no_file.stderr, no_file.stderr


def test_unknown_phase_is_a_usage_error() -> None:
    result = run("workflow-execution", "list", "--phase", "DONE")
    assert result.exit_code == 2 and "'--phase'" in result.stderr, result.stderr


# ------------------------------------------------------------------------------ rendering


def execution(phase: str, *statuses: str, outputs: dict[str, str] | None = None) -> Any:
    task = workflow_execution_pb2.TaskState
    return workflow_execution_pb2.WorkflowExecution(
        id="wex-01J00000000000000000000000",
        workflow_name="hello-workflow",
        phase=common_pb2.ExecutionPhase.Value(phase),
        tasks=[
            task(name=name, kind=kind, status=task.TaskStatus.Value(status), output=(outputs or {}).get(name, ""))
            for (name, kind), status in zip(TASKS, statuses, strict=True)
        ],
    )


def test_follow_prints_the_phase_and_each_task_change_in_order() -> None:
    steps = [
        execution("PENDING", "PENDING", "PENDING", "PENDING"),
        execution("IN_PROGRESS", "RUNNING", "PENDING", "PENDING"),
        # Several changes folded into one update (a watcher reads the latest version only).
        execution("IN_PROGRESS", "COMPLETED", "COMPLETED", "RUNNING", outputs={"compose": '{"greeting": "Hi"}'}),
        execution("COMPLETED", "COMPLETED", "COMPLETED", "COMPLETED", outputs={"ask": '["[echo] Hi"]'}),
    ]
    lines: list[str] = []
    previous = None
    for step in steps:
        lines += render.execution_changes(previous, step)
        previous = step
    assert lines == [
        "⏳ PENDING",
        "⚙️  IN_PROGRESS",
        "  ⚙️  compose (set): RUNNING",
        '  ✅ compose (set): COMPLETED  {"greeting": "Hi"}',
        "  ✅ pause (wait): COMPLETED",
        "  ⚙️  ask (agent): RUNNING",
        '  ✅ ask (agent): COMPLETED  ["[echo] Hi"]',
        "✅ COMPLETED",
    ]


def test_follow_joining_late_shows_what_already_happened() -> None:
    lines = render.execution_changes(None, execution("FAILED", "COMPLETED", "FAILED", "SKIPPED"))
    assert lines == [
        "  ✅ compose (set): COMPLETED",
        "  ❌ pause (wait): FAILED",
        "  ⏭️  ask (agent): SKIPPED",
        "❌ FAILED",
    ]


@pytest.mark.parametrize("document", ["", "not json", "[]", '{"tasks": "x"}', '{"tasks": [1, {"name": 2}]}'])
def test_outline_of_a_broken_stored_document_does_not_crash(document: str) -> None:
    description, outline = render.document_outline(document)
    assert description == "" and all(isinstance(n, str) and isinstance(k, str) for n, k in outline)


# ------------------------------------------------------------------------------ in-process server


class InProcessServer:
    """The real server stack on its own event loop in a background thread.

    Temporal is a port nobody listens on, so the server serves reads from its store and answers
    UNAVAILABLE for anything that needs Temporal -- which is exactly what these tests look at.
    """

    def __init__(self, data_dir: Path) -> None:
        self.config = Config(
            temporal_host_port=f"127.0.0.1:{free_port()}",
            address=f"127.0.0.1:{free_port()}",
            data_dir=data_dir,
            health_interval=60.0,
            grace=0.5,
            queues=TaskQueues.with_suffix(data_dir.name),
        )
        self.app = StigmerServer(self.config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), name="stigmer-server", daemon=True)
        self.exit_code: int | None = None

    @property
    def address(self) -> str:
        return self.config.address

    @property
    def store(self) -> Store:
        assert self.app.running is not None
        return self.app.running.store

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._ready.set()
        self.exit_code = await self.app.run(self._stop)

    def start(self) -> InProcessServer:
        self._thread.start()
        wait_until(
            lambda: self.app.running is not None or self.exit_code is not None,
            timeout=20,
            what=f"the in-process server on {self.address}",
        )
        assert self.exit_code is None, f"server exited with {self.exit_code}"
        return self

    def stop(self) -> None:
        if self._ready.wait(timeout=10) and self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=20)
        assert not self._thread.is_alive(), "the in-process server did not stop"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    srv = InProcessServer(tmp_path_factory.mktemp("cli-server"))
    try:
        yield srv.start()
    finally:
        srv.stop()


def at(server: InProcessServer, *args: str, input: str | bytes | None = None) -> Result:
    return run(*args, "--address", server.address, input=input)


@pytest.fixture(scope="module")
def seeded(server: InProcessServer) -> dict[str, Any]:
    """Records a running server would have produced, written straight into its store."""
    store = server.store
    document = EXAMPLE.read_text()
    good = store.create_workflow(name="hello-workflow", document=document, valid=True)
    bad = store.create_workflow(
        name="broken",
        document='{"name": "broken", "tasks": [{"name": "w", "kind": "wait", "seconds": "1"}]}',
        valid=False,
        validation_errors=["tasks[0].seconds: must be a number, got string"],
    )
    done = run_execution(store, good, fail_at=None)
    failed = run_execution(store, good, fail_at="pause")
    pending = store.create_workflow_execution(workflow=good, input="", task_names_kinds=TASKS)
    return {"good": good, "bad": bad, "done": done, "failed": failed, "pending": pending, "document": document}


def run_execution(store: Store, workflow: Workflow, *, fail_at: str | None) -> WorkflowExecution:
    record = store.create_workflow_execution(workflow=workflow, input='{"user": "Ada"}', task_names_kinds=TASKS)
    store.mark_workflow_execution_started(record.id)
    for name, _ in TASKS:
        store.set_task_status(record.id, name, TaskStatus.RUNNING)
        if name == fail_at:
            store.set_task_status(record.id, name, TaskStatus.FAILED, error="timer broke")
            for later, _ in TASKS[[n for n, _ in TASKS].index(name) + 1 :]:
                store.set_task_status(record.id, later, TaskStatus.SKIPPED)
            return store.fail_workflow_execution(record.id, error=f"task {name!r} failed: timer broke")
        store.set_task_status(record.id, name, TaskStatus.COMPLETED, output='{"greeting": "Hello, Ada!"}')
    return store.complete_workflow_execution(record.id, output='{"greeting": "Hello, Ada!"}')


def test_create_and_validate_need_temporal_exit_75(server: InProcessServer, tmp_path: Path) -> None:
    document = tmp_path / "unstored.json"
    document.write_text(EXAMPLE.read_text().replace('"hello-workflow"', '"unstored"'))
    for args in (["workflow", "create", "-f", str(document)], ["workflow", "validate", "-f", "-"]):
        result = at(server, *args, input=document.read_bytes())
        assert result.exit_code == 75, result.output
        assert result.stderr.splitlines()[:2] == UNAVAILABLE_LINES, result.stderr
    listed = at(server, "workflow", "list", "-o", "json")
    assert listed.exit_code == 0 and '"unstored"' not in listed.stdout  # refused, so nothing was stored


def test_execution_create_needs_temporal_exit_75(server: InProcessServer, seeded: dict[str, Any]) -> None:
    result = at(server, "workflow-execution", "create", "--workflow", "hello-workflow", "--input", '{"user": "X"}')
    assert result.exit_code == 75 and result.stderr.splitlines()[:2] == UNAVAILABLE_LINES, result.output
    as_json = at(server, "workflow-execution", "create", "--workflow", "hello-workflow", "-o", "json")
    assert as_json.exit_code == 75
    error = json.loads(as_json.stdout)["error"]
    assert error["code"] == "UNAVAILABLE" and error["connection_state"] in {"DISCONNECTED", "CONNECTING"}, error


def test_workflow_errors_map_to_codes(server: InProcessServer, seeded: dict[str, Any]) -> None:
    missing = at(server, "workflow", "get", "no-such-workflow")
    assert missing.exit_code == 1, missing.output
    assert missing.stderr.splitlines() == ["❌ Error: workflow 'no-such-workflow' not found", "Code: NOT_FOUND"]
    unknown = at(server, "workflow-execution", "create", "--workflow", "no-such-workflow")
    assert unknown.exit_code == 1 and "Code: NOT_FOUND" in unknown.stderr, unknown.output
    invalid = at(server, "workflow-execution", "create", "--workflow", "broken")
    assert invalid.exit_code == 1 and "Code: FAILED_PRECONDITION" in invalid.stderr, invalid.output
    assert "tasks[0].seconds: must be a number" in invalid.stderr
    bad_id = at(server, "workflow-execution", "get", "not-an-id")
    assert bad_id.exit_code == 1 and "Code: INVALID_ARGUMENT" in bad_id.stderr, bad_id.output


def test_workflow_get_and_list(server: InProcessServer, seeded: dict[str, Any]) -> None:
    good, bad = seeded["good"], seeded["bad"]
    shown = at(server, "workflow", "get", "hello-workflow")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.startswith(f"{good.id}  hello-workflow  ✅ valid"), shown.stdout
    assert "tasks: compose (set), pause (wait), ask (agent)" in shown.stdout
    by_id = at(server, "workflow", "get", bad.id)
    assert by_id.exit_code == 0 and "❌ invalid (1 error, cannot be executed)" in by_id.stdout, by_id.stdout
    assert "    tasks[0].seconds: must be a number, got string" in by_id.stdout
    verbatim = at(server, "workflow", "get", "hello-workflow", "--document")
    assert verbatim.stdout == seeded["document"]
    as_json = json.loads(at(server, "workflow", "get", "broken", "-o", "json").stdout)
    assert as_json["validation"] == {"valid": False, "errors": ["tasks[0].seconds: must be a number, got string"]}
    listing = at(server, "workflow", "list")
    assert listing.exit_code == 0
    header, *rows = listing.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "VALID", "TASKS", "CREATED"]
    assert [row.split()[:4] for row in rows] == [[bad.id, "broken", "NO", "1"], [good.id, "hello-workflow", "yes", "3"]]
    page = json.loads(at(server, "workflow", "list", "--page-size", "1", "-o", "json").stdout)
    assert [w["name"] for w in page["workflows"]] == ["broken"] and page["next_page_token"]
    second = at(server, "workflow", "list", "--page-size", "1", "--page-token", page["next_page_token"])
    assert "hello-workflow" in second.stdout and "broken" not in second.stdout


def test_execution_get_list_and_watch(server: InProcessServer, seeded: dict[str, Any]) -> None:
    done, failed = seeded["done"], seeded["failed"]
    shown = at(server, "workflow-execution", "get", done.id)
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.startswith(f"{done.id}  ✅ COMPLETED  workflow=hello-workflow"), shown.stdout
    assert "  - pause (wait): COMPLETED" in shown.stdout
    as_json = json.loads(at(server, "workflow-execution", "get", failed.id, "-o", "json").stdout)
    assert as_json["phase"] == "FAILED" and [t["status"] for t in as_json["tasks"]] == [
        "COMPLETED",
        "FAILED",
        "SKIPPED",
    ]
    only_failed = at(server, "workflow-execution", "list", "--phase", "failed")
    assert only_failed.exit_code == 0
    assert [row.split()[:4] for row in only_failed.stdout.splitlines()[1:]] == [
        [failed.id, "FAILED", "hello-workflow", "1/3"]
    ]
    everything = json.loads(at(server, "workflow-execution", "list", "-o", "json").stdout)
    assert {e["id"] for e in everything["executions"]} >= {done.id, failed.id, seeded["pending"].id}

    watched = at(server, "workflow-execution", "watch", done.id)
    assert watched.exit_code == 0, watched.output
    assert watched.stdout.splitlines()[:4] == [
        '  ✅ compose (set): COMPLETED  {"greeting": "Hello, Ada!"}',
        '  ✅ pause (wait): COMPLETED  {"greeting": "Hello, Ada!"}',
        '  ✅ ask (agent): COMPLETED  {"greeting": "Hello, Ada!"}',
        "✅ COMPLETED",
    ]
    lost = at(server, "workflow-execution", "watch", failed.id)
    assert lost.exit_code == 1 and "error:  task 'pause' failed: timer broke" in lost.stdout, lost.output
    lines = at(server, "workflow-execution", "watch", failed.id, "-o", "json").stdout.splitlines()
    assert [json.loads(line)["phase"] for line in lines] == ["FAILED"]


def test_watch_gives_up_at_its_timeout_exit_75(server: InProcessServer, seeded: dict[str, Any]) -> None:
    pending = seeded["pending"]
    result = at(server, "workflow-execution", "watch", pending.id, "--timeout", "0.3")
    assert result.exit_code == 75, result.output
    assert result.stdout.splitlines() == ["⏳ PENDING"]
    assert result.stderr.splitlines() == [
        f"❌ Error: gave up after 0.3s: {pending.id} is still PENDING",
        "Code: DEADLINE_EXCEEDED",
    ]
    assert server.store.get_workflow_execution(pending.id).phase is Phase.PENDING


def test_completion_asks_the_server(server: InProcessServer, seeded: dict[str, Any]) -> None:
    env = {"STIGMER_SERVER_ADDRESS": server.address}
    assert complete("stigmer workflow get hel", env=env) == ["hello-workflow"]
    assert complete("stigmer workflow-execution create --workflow b", env=env) == ["broken"]
    by_id = complete(f"stigmer workflow get {seeded['good'].id[:4]}", env=env)
    assert sorted(by_id) == sorted([seeded["good"].id, seeded["bad"].id])
    ids = complete(f"stigmer workflow-execution watch {seeded['done'].id}", env=env)
    assert ids == [seeded["done"].id]
