"""``stigmer workflow-execution create | get | list | watch | cancel | delete``."""

from __future__ import annotations

import json
import sys
import uuid
from datetime import datetime
from typing import IO, NoReturn

import click
from click.shell_completion import CompletionItem

from stigmer.cli import render
from stigmer.cli.common import (
    Api,
    address_option,
    api,
    call,
    emit_json,
    output_option,
    page_json,
    paging_options,
    phase_option,
    show,
    timeout_option,
    to_dict,
)
from stigmer.cli.lifecycle import (
    cancel_timeout_option,
    cancelled,
    created_after_option,
    deleted,
    follow,
    id_argument,
    reason_option,
    request_id_of,
    request_id_option,
    wait_option,
)
from stigmer.cli.workflow import COMPLETION_TIMEOUT, complete_workflow, completion_address
from stigmer.client.models import message_of
from stigmer.errors import ExitCode, StigmerError

INPUT_EXAMPLE = '{"user": "Ada"}'

watch_timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Give up after this many seconds (exit 75); by default wait until the execution finishes.",
)


def json_object(text: str, *, ctx: click.Context, param: click.Parameter) -> str:
    """``text`` unchanged if it is a JSON object (or empty: no input); a usage error naming the option if not.

    The server checks too, but a typo is cheaper to report here, before anything is sent.
    """
    if not text.strip():
        return text
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise click.BadParameter(
            f"not valid JSON ({exc}); expected an object like '{INPUT_EXAMPLE}'", ctx=ctx, param=param
        ) from None
    if not isinstance(value, dict):
        raise click.BadParameter(
            f"must be a JSON object like '{INPUT_EXAMPLE}', got {type(value).__name__} {render.short(text, 40)}",
            ctx=ctx,
            param=param,
        )
    return text


def _input_text(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    return None if value is None else json_object(value, ctx=ctx, param=param)


def _input_file(ctx: click.Context, param: click.Parameter, value: IO[bytes] | None) -> str | None:
    if value is None:
        return None
    try:
        text = value.read().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise click.BadParameter(f"not UTF-8 text ({exc.reason} at byte {exc.start})", ctx=ctx, param=param) from None
    return json_object(text, ctx=ctx, param=param)


def complete_execution(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Ids of recent workflow executions, from the running server; nothing if it cannot be asked."""
    try:
        with api(completion_address(ctx), COMPLETION_TIMEOUT) as conn:
            page = conn.client.list_workflow_executions_page(page_size=200)
    except StigmerError:
        return []
    return [CompletionItem(e.id, help=e.phase.value) for e in page.items if e.id.startswith(incomplete)]


@click.group("workflow-execution")
def workflow_execution() -> None:
    """Run stored workflows as durable Temporal workflows and follow their tasks.

    \b
    Examples:
      stigmer workflow-execution create --workflow hello-workflow --input '{"user": "Ada"}' --follow
      stigmer workflow-execution list --phase IN_PROGRESS
    """


@workflow_execution.command()
@click.option(
    "--workflow",
    "workflow_ref",
    required=True,
    metavar="NAME_OR_ID",
    shell_complete=complete_workflow,
    help="The stored workflow to run: its name or its id (wf-...).",
)
@click.option(
    "--input",
    "input_text",
    callback=_input_text,
    metavar="JSON",
    help=f"The execution's input, a JSON object (e.g. '{INPUT_EXAMPLE}'); the document reads it as ${{input.KEY}}.",
)
@click.option(
    "--input-file",
    "input_from_file",
    type=click.File("rb"),
    callback=_input_file,
    metavar="FILE",
    help="Read the input from FILE instead ('-' for stdin).",
)
@click.option(
    "--follow", is_flag=True, help="Stream the phase and each task's status until it finishes; exit 1 unless COMPLETED."
)
@request_id_option
@address_option
@output_option
@timeout_option
def create(
    workflow_ref: str,
    input_text: str | None,
    input_from_file: str | None,
    follow: bool,
    request_id: uuid.UUID | None,
    address: str,
    output: str,
    timeout: float,
) -> None:
    """Run a stored workflow; prints "✅ Created: wex-..." when Temporal accepted it.

    While Temporal is unreachable this fails fast (exit 75) and nothing is stored: try again
    later. A workflow that failed validation cannot be run (exit 1, FAILED_PRECONDITION).

    \b
    Examples:
      stigmer workflow-execution create --workflow hello-workflow --input '{"user": "Ada"}'
      stigmer workflow-execution create --workflow hello-workflow --input-file input.json --follow
      stigmer workflow-execution create --workflow hello-workflow --request-id "$(uuidgen)"
    """
    if input_text is not None and input_from_file is not None:
        raise click.UsageError("give the input once: --input JSON or --input-file FILE, not both")
    input_ = input_text if input_text is not None else input_from_file or ""
    with api(address, timeout) as conn:
        created = message_of(
            call(
                conn,
                output,
                conn.client.create_workflow_execution,
                workflow=workflow_ref,
                input=input_,
                request_id=request_id_of(request_id),
            )
        )
        if output == "text":
            click.echo(f"✅ Created: {created.id}")
        elif not follow:  # with --follow the stream's first line is this same record
            emit_json(to_dict(created))
        if follow:
            _follow(conn, created.id, output, timeout=None)


@workflow_execution.command()
@click.argument("execution_id", metavar="ID", shell_complete=complete_execution)
@address_option
@output_option
@timeout_option
def get(execution_id: str, address: str, output: str, timeout: float) -> None:
    """Show one workflow execution: phase, times, each task's status and output, error.

    \b
    Example:
      stigmer workflow-execution get wex-01J0000000000000000000000
    """
    with api(address, timeout) as conn:
        record = call(conn, output, conn.client.get_workflow_execution, execution_id)
    show(record, output, render.workflow_execution)


@workflow_execution.command("list")
@phase_option
@click.option(
    "--workflow",
    "workflow_ref",
    default="",
    metavar="NAME_OR_ID",
    shell_complete=complete_workflow,
    help="Only executions of this workflow: its name (as it was when they were created) or its id.",
)
@created_after_option
@paging_options
@address_option
@output_option
@timeout_option
def list_(
    phase: str | None,
    workflow_ref: str,
    created_after: datetime | None,
    page_size: int,
    page_token: str,
    address: str,
    output: str,
    timeout: float,
) -> None:
    """List workflow executions, newest first; the filters combine (a --page-token needs the same ones).

    \b
    Examples:
      stigmer workflow-execution list
      stigmer workflow-execution list --phase FAILED -o json
      stigmer workflow-execution list --workflow hello-workflow --created-after 2h
    """
    with api(address, timeout) as conn:
        page = call(
            conn,
            output,
            conn.client.list_workflow_executions_page,
            phase=phase.upper() if phase else None,
            workflow=workflow_ref,
            created_after=created_after,
            page_size=page_size,
            page_token=page_token,
        )
    if output == "json":
        emit_json(page_json("executions", page))
        return
    rows = [render.workflow_execution_row(message_of(r)) for r in page.items]
    click.echo(
        render.table(rows, ["ID", "PHASE", "WORKFLOW", "TASKS DONE", "CREATED"]) if rows else "No workflow executions."
    )
    if page.next_page_token:
        click.echo(f"More: --page-token {page.next_page_token}")


@workflow_execution.command()
@click.argument("execution_id", metavar="ID", shell_complete=complete_execution)
@address_option
@output_option
@watch_timeout_option
def watch(execution_id: str, address: str, output: str, timeout: float | None) -> None:
    """Stream an execution's phase and task statuses until it finishes; exit 1 unless it COMPLETED.

    With -o json, prints one JSON object per line: the execution after each change.

    \b
    Examples:
      stigmer workflow-execution watch wex-01J0000000000000000000000
      stigmer workflow-execution watch wex-01J0000000000000000000000 --timeout 60 -o json
    """
    with api(address, timeout or 30.0) as conn:
        _follow(conn, execution_id, output, timeout=timeout)


@workflow_execution.command()
@id_argument("wex", shell_complete=complete_execution)
@reason_option
@wait_option
@address_option
@output_option
@cancel_timeout_option
def cancel(execution_id: str, reason: str, wait: bool, address: str, output: str, timeout: float) -> None:
    """Ask a running execution to stop: its running task becomes CANCELLED (an agent step's
    execution with it), the tasks not reached SKIPPED, the execution CANCELLED.

    Recorded with who asked (user@host) and --reason. A PENDING execution is cancelled at once;
    one that already finished cannot be (exit 1, FAILED_PRECONDITION).

    \b
    Examples:
      stigmer workflow-execution cancel wex-01JF8ZQ5W3K7N2C4R6T8V0XBYD --reason "wrong input"
      stigmer workflow-execution cancel wex-01JF8ZQ5W3K7N2C4R6T8V0XBYD --wait --timeout 60
    """
    with api(address, timeout) as conn:
        record = call(conn, output, conn.client.cancel_workflow_execution, execution_id, reason=reason)
        cancelled(
            conn, output, record, wait=wait, timeout=timeout, watch=conn.client.watch_workflow_execution,
            changes=render.execution_changes, text=render.workflow_execution,
        )  # fmt: skip


@workflow_execution.command()
@id_argument("wex", shell_complete=complete_execution)
@click.option("--force", is_flag=True, help="Cancel it first if it is still running, wait for it to stop, then delete.")
@address_option
@output_option
@timeout_option
def delete(execution_id: str, force: bool, address: str, output: str, timeout: float) -> None:
    """Delete a finished execution and the agent executions of its steps; one still PENDING or
    IN_PROGRESS needs --force (else exit 1).

    \b
    Examples:
      stigmer workflow-execution delete wex-01JF8ZQ5W3K7N2C4R6T8V0XBYD
      stigmer workflow-execution delete wex-01JF8ZQ5W3K7N2C4R6T8V0XBYD --force -o json
    """
    with api(address, timeout) as conn:  # with --force the client allows the server's wait (30 s) and more
        record = call(conn, output, conn.client.delete_workflow_execution, execution_id, force=force)
    deleted(record, output, detail=record.phase.value)


def _follow(conn: Api, execution_id: str, output: str, *, timeout: float | None) -> NoReturn:
    """Print each change until a terminal phase; exit 0 only for COMPLETED."""
    updates = conn.client.watch_workflow_execution(execution_id, timeout=timeout)
    last = follow(conn, output, execution_id, updates, changes=render.execution_changes, timeout=timeout)
    if output == "text":
        click.echo(render.workflow_execution(last))
    sys.exit(ExitCode.OK if render.phase_name(last.phase) == "COMPLETED" else ExitCode.ERROR)
