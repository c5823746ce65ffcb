"""``stigmer workflow create | validate | get | list | delete``."""

from __future__ import annotations

import os
import sys
import uuid
from typing import IO, Any

import click
from click.shell_completion import CompletionItem

from stigmer.cli import render
from stigmer.cli.common import (
    address_option,
    api,
    call,
    emit_json,
    is_tty,
    output_option,
    page_json,
    paging_options,
    timeout_option,
    to_dict,
)
from stigmer.cli.lifecycle import deleted, request_id_of, request_id_option
from stigmer.client.models import message_of
from stigmer.config import DEFAULT_ADDRESS
from stigmer.errors import ExitCode, StigmerError

#: Completion runs on every <TAB>: a server that does not answer at once gets no say.
COMPLETION_TIMEOUT = 1.0

file_option = click.option(
    "-f",
    "--file",
    "document_file",
    required=True,
    type=click.File("rb"),
    metavar="FILE",
    help="The workflow document (JSON); '-' reads it from stdin.",
)


def read_document(document_file: IO[bytes]) -> str:
    """The document's text. A UTF-8 byte-order mark (some editors write one) is not part of the JSON."""
    data = document_file.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        name = getattr(document_file, "name", "-")
        raise click.BadParameter(
            f"{name} is not UTF-8 text ({exc.reason} at byte {exc.start})", param_hint="'-f' / '--file'"
        ) from None


def completion_address(ctx: click.Context) -> str:
    """The server to ask during completion: --address if already typed, else env, else the default."""
    typed = ctx.params.get("address")
    return str(typed or os.environ.get("STIGMER_SERVER_ADDRESS") or DEFAULT_ADDRESS)


def complete_workflow(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Names (and ids) of stored workflows, from the running server; nothing if it cannot be asked."""
    try:
        with api(completion_address(ctx), COMPLETION_TIMEOUT) as conn:
            page = conn.client.list_workflows_page(page_size=1000)
    except StigmerError:
        return []
    field = "id" if incomplete.startswith("wf-") else "name"
    return [CompletionItem(getattr(w, field)) for w in page.items if getattr(w, field).startswith(incomplete)]


def _print_invalid(result: Any, heading: str) -> None:
    click.echo(heading)
    for line in render.validation_errors(result.errors):
        click.echo(line)


@click.group()
def workflow() -> None:
    """Register workflow documents (JSON lists of set, wait and agent tasks) and inspect them.

    \b
    Examples:
      stigmer workflow validate -f examples/hello-workflow.json
      stigmer workflow create -f examples/hello-workflow.json
      stigmer workflow-execution create --workflow hello-workflow --input '{"user": "Ada"}' --follow
    """


@workflow.command()
@file_option
@request_id_option
@address_option
@output_option
@timeout_option
def create(document_file: IO[bytes], request_id: uuid.UUID | None, address: str, output: str, timeout: float) -> None:
    """Validate a workflow document and store it; prints "✅ Created: wf-... (NAME)".

    A document that fails validation is stored anyway (so its errors can be read back with
    `stigmer workflow get`), but it cannot be executed: its errors are printed, one per line
    naming the JSON path, and the exit code is 1. Check first with `stigmer workflow validate`.
    Validation runs on a Temporal worker: while Temporal is unreachable this fails fast (exit 75).

    \b
    Examples:
      stigmer workflow create -f examples/hello-workflow.json
      cat my-workflow.json | stigmer workflow create -f -
      stigmer workflow create -f my-workflow.json --request-id 3f2b8c1e-5d4a-4f6b-9c7d-2e1f0a9b8c7d
    """
    document = read_document(document_file)
    with api(address, timeout) as conn:
        created = message_of(
            call(conn, output, conn.client.create_workflow, document, request_id=request_id_of(request_id))
        )
    valid = created.validation.valid
    if output == "json":
        emit_json(to_dict(created))
    elif valid:
        click.echo(f"✅ Created: {created.id} ({created.name})")
    else:
        count = render.plural(len(created.validation.errors), "validation error")
        _print_invalid(
            created.validation,
            f"❌ Invalid: stored as {created.id} ({created.name}) but it cannot be executed; {count}:",
        )
    sys.exit(ExitCode.OK if valid else ExitCode.ERROR)


@workflow.command()
@file_option
@address_option
@output_option
@timeout_option
def validate(document_file: IO[bytes], address: str, output: str, timeout: float) -> None:
    """Check a workflow document without storing it: "✅ Valid" (exit 0), or its errors (exit 1).

    Each error names the JSON path of the problem, e.g. "tasks[1].seconds: must be a number".

    \b
    Examples:
      stigmer workflow validate -f examples/hello-workflow.json
      stigmer workflow validate -f my-workflow.json -o json | jq -r '.errors[]'
    """
    document = read_document(document_file)
    with api(address, timeout) as conn:
        result = message_of(call(conn, output, conn.client.validate_workflow, document))
    if output == "json":
        emit_json(to_dict(result))
    elif result.valid:
        click.echo("✅ Valid")
    else:
        _print_invalid(result, f"❌ Invalid: {render.plural(len(result.errors), 'error')}:")
    sys.exit(ExitCode.OK if result.valid else ExitCode.ERROR)


@workflow.command()
@click.argument("id_or_name", metavar="NAME_OR_ID", shell_complete=complete_workflow)
@click.option(
    "--document",
    "document_only",
    is_flag=True,
    help="Print only the stored document, byte for byte (e.g. to save it to a file).",
)
@address_option
@output_option
@timeout_option
def get(id_or_name: str, document_only: bool, address: str, output: str, timeout: float) -> None:
    """Show one workflow: id, name, validity (with its errors), tasks.

    \b
    Examples:
      stigmer workflow get hello-workflow
      stigmer workflow get hello-workflow --document > hello-copy.json
    """
    with api(address, timeout) as conn:
        record = message_of(call(conn, output, conn.client.get_workflow, id_or_name))
    if output == "json":
        emit_json(to_dict(record))
    elif document_only:
        # Byte for byte into a file or pipe; on a terminal, end the line so the prompt starts afresh.
        click.echo(record.document, nl=is_tty() and not record.document.endswith("\n"))
    else:
        click.echo(render.workflow(record))


@workflow.command("list")
@paging_options
@address_option
@output_option
@timeout_option
def list_(page_size: int, page_token: str, address: str, output: str, timeout: float) -> None:
    """List stored workflows, newest first.

    \b
    Examples:
      stigmer workflow list
      stigmer workflow list -o json | jq -r '.workflows[].name'
    """
    with api(address, timeout) as conn:
        page = call(conn, output, conn.client.list_workflows_page, page_size=page_size, page_token=page_token)
    if output == "json":
        emit_json(page_json("workflows", page))
        return
    rows = [render.workflow_row(message_of(r)) for r in page.items]
    click.echo(render.table(rows, ["ID", "NAME", "VALID", "TASKS", "CREATED"]) if rows else "No workflows.")
    if page.next_page_token:
        click.echo(f"More: --page-token {page.next_page_token}")


@workflow.command()
@click.argument("id_or_name", metavar="NAME_OR_ID", shell_complete=complete_workflow)
@address_option
@output_option
@timeout_option
def delete(id_or_name: str, address: str, output: str, timeout: float) -> None:
    """Delete a stored workflow; its name can be used again. Executions of it that finished are
    kept; while any is PENDING or IN_PROGRESS it cannot be deleted (exit 1, FAILED_PRECONDITION).

    \b
    Examples:
      stigmer workflow delete hello-workflow
      stigmer workflow delete wf-01JF8ZQ5W3K7N2C4R6T8V0XBYD -o json
    """
    with api(address, timeout) as conn:
        record = call(conn, output, conn.client.delete_workflow, id_or_name)
    deleted(record, output, detail=record.name)
