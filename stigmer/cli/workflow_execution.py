"""``stigmer workflow-execution create | get | list | watch``."""

from __future__ import annotations

import json
import sys
from typing import IO, Any, NoReturn

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
    refusals,
    show,
    timeout_option,
    to_dict,
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
@address_option
@output_option
@timeout_option
def create(
    workflow_ref: str,
    input_text: str | None,
    input_from_file: str | None,
    follow: bool,
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
    """
    if input_text is not None and input_from_file is not None:
        raise click.UsageError("give the input once: --input JSON or --input-file FILE, not both")
    input_ = input_text if input_text is not None else input_from_file or ""
    with api(address, timeout) as conn:
        created = message_of(
            call(conn, output, conn.client.create_workflow_execution, workflow=workflow_ref, input=input_)
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
@paging_options
@address_option
@output_option
@timeout_option
def list_(phase: str | None, page_size: int, page_token: str, address: str, output: str, timeout: float) -> None:
    """List workflow executions, newest first.

    \b
    Examples:
      stigmer workflow-execution list
      stigmer workflow-execution list --phase FAILED -o json
    """
    with api(address, timeout) as conn:
        page = call(
            conn,
            output,
            conn.client.list_workflow_executions_page,
            phase=phase.upper() if phase else None,
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


def _follow(conn: Api, execution_id: str, output: str, *, timeout: float | None) -> NoReturn:
    """Print each change until a terminal phase; exit 0 only for COMPLETED."""
    last: Any = None
    with refusals(conn, output):
        try:
            for view in conn.client.watch_workflow_execution(execution_id, timeout=timeout):
                update = message_of(view)
                if output == "json":
                    click.echo(json.dumps(to_dict(update), ensure_ascii=False))
                else:
                    for line in render.execution_changes(last, update):
                        click.echo(line)
                last = update
        except StigmerError as error:
            if error.code == "DEADLINE_EXCEEDED" and last is not None:
                waited = f" after {timeout:g}s" if timeout else ""
                _stop(
                    f"gave up{waited}: {execution_id} is still {render.phase_name(last.phase)}",
                    code="DEADLINE_EXCEEDED",
                    exit_code=ExitCode.TEMPFAIL,
                    output=output,
                )
            raise
    if last is None or render.phase_name(last.phase) not in render.TERMINAL:
        # Only a server going away mid-stream ends it early; the execution itself runs on.
        where = "before sending anything" if last is None else f"while {render.phase_name(last.phase)}"
        _stop(
            f"the server at {conn.address} ended the stream {where}; "
            f"check again with `stigmer workflow-execution watch {execution_id}`",
            code="ABORTED",
            exit_code=ExitCode.ERROR,
            output=output,
        )
    if output == "text":
        click.echo(render.workflow_execution(last))
    sys.exit(ExitCode.OK if render.phase_name(last.phase) == "COMPLETED" else ExitCode.ERROR)


def _stop(message: str, *, code: str, exit_code: int, output: str) -> NoReturn:
    if output == "json":
        emit_json({"error": {"code": code, "message": message}})
    else:
        click.echo(f"❌ Error: {message}", err=True)
        click.echo(f"Code: {code}", err=True)
    sys.exit(exit_code)
