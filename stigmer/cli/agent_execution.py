"""``stigmer agent-execution create | get | list | watch | cancel | delete``."""

from __future__ import annotations

import json
import sys
import uuid
from datetime import datetime

import click

from stigmer.cli import render
from stigmer.cli.common import (
    Api,
    address_option,
    api,
    call,
    each,
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
    id_argument,
    reason_option,
    request_id_of,
    request_id_option,
    wait_option,
)
from stigmer.client.models import message_of
from stigmer.errors import ExitCode


def _env_pairs(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", ctx=ctx, param=param)
        env[key] = value
    return env


@click.group("agent-execution")
def agent_execution() -> None:
    """Run agents as durable Temporal workflows and follow them."""


@agent_execution.command()
@click.option("--agent", required=True, help="Which agent to run (the built-in one answers from the message).")
@click.option("--message", required=True, help="What to ask it (up to 1 MiB).")
@click.option(
    "-e",
    "--env",
    "runtime_env",
    multiple=True,
    callback=_env_pairs,
    metavar="KEY=VALUE",
    help="Runtime environment for the agent; repeatable. Built-in agent: STIGMER_AGENT_DELAY_SECONDS=N, "
    "STIGMER_AGENT_FAIL=reason.",
)
@click.option("--follow", is_flag=True, help="Stream the status until it finishes; exit 1 unless COMPLETED.")
@request_id_option
@address_option
@output_option
@timeout_option
def create(
    agent: str,
    message: str,
    runtime_env: dict[str, str],
    follow: bool,
    request_id: uuid.UUID | None,
    address: str,
    output: str,
    timeout: float,
) -> None:
    """Create an agent execution; prints "✅ Created: aex-..." when Temporal accepted it.

    While Temporal is unreachable this fails fast (exit 75) and nothing is stored: try again later
    (with the same --request-id, a retry that did land returns the same execution).
    """
    with api(address, timeout) as conn:
        created = call(
            conn,
            output,
            conn.client.create_agent_execution,
            agent=agent,
            message=message,
            runtime_env=runtime_env,
            request_id=request_id_of(request_id),
        )
        if not follow:
            if output == "json":
                emit_json(to_dict(message_of(created)))
            else:
                click.echo(f"✅ Created: {created.id}")
            return
        if output != "json":
            click.echo(f"✅ Created: {created.id}")
        _follow(conn, created.id, output)


@agent_execution.command()
@click.argument("execution_id", metavar="ID")
@address_option
@output_option
@timeout_option
def get(execution_id: str, address: str, output: str, timeout: float) -> None:
    """Show one agent execution: phase, times, conversation, error."""
    with api(address, timeout) as conn:
        record = call(conn, output, conn.client.get_agent_execution, execution_id)
    show(record, output, render.agent_execution)


@agent_execution.command("list")
@phase_option
@click.option("--agent", default="", help="Only executions of this agent (exact name).")
@click.option("--parent", "parent_id", default="", metavar="WEX_ID", help="Only the steps of this workflow execution.")
@created_after_option
@paging_options
@address_option
@output_option
@timeout_option
def list_(
    phase: str | None,
    agent: str,
    parent_id: str,
    created_after: datetime | None,
    page_size: int,
    page_token: str,
    address: str,
    output: str,
    timeout: float,
) -> None:
    """List agent executions, newest first; the filters combine (a --page-token needs the same ones).

    \b
    Examples:
      stigmer agent-execution list --agent echo --created-after 10m
      stigmer agent-execution list --parent wex-01JF8ZQ5W3K7N2C4R6T8V0XBYD -o json
    """
    with api(address, timeout) as conn:
        page = call(
            conn,
            output,
            conn.client.list_agent_executions_page,
            phase=phase.upper() if phase else None,
            agent=agent,
            parent_id=parent_id,
            created_after=created_after,
            page_size=page_size,
            page_token=page_token,
        )
    if output == "json":
        emit_json(page_json("executions", page))
        return
    records = [message_of(r) for r in page.items]
    rows = [
        [r.id, render.phase_name(r.phase), r.agent, render.clock(r.created_at), render.short(r.message)]
        for r in records
    ]
    click.echo(render.table(rows, ["ID", "PHASE", "AGENT", "CREATED", "MESSAGE"]) if rows else "No agent executions.")
    if page.next_page_token:
        click.echo(f"More: --page-token {page.next_page_token}")


@agent_execution.command()
@click.argument("execution_id", metavar="ID")
@address_option
@output_option
def watch(execution_id: str, address: str, output: str) -> None:
    """Stream an execution's status until it finishes; exit 1 unless it COMPLETED."""
    with api(address, 30.0) as conn:
        _follow(conn, execution_id, output)


@agent_execution.command()
@id_argument("aex")
@reason_option
@wait_option
@address_option
@output_option
@cancel_timeout_option
def cancel(execution_id: str, reason: str, wait: bool, address: str, output: str, timeout: float) -> None:
    """Ask a running execution to stop; it becomes CANCELLED about a second later.

    Recorded with who asked (user@host) and --reason. A PENDING execution is cancelled at once;
    one that already finished cannot be (exit 1, FAILED_PRECONDITION).

    \b
    Examples:
      stigmer agent-execution cancel aex-01JF8ZQ5W3K7N2C4R6T8V0XBYD --reason "wrong prompt"
      stigmer agent-execution cancel aex-01JF8ZQ5W3K7N2C4R6T8V0XBYD --wait -o json
    """
    with api(address, timeout) as conn:
        record = call(conn, output, conn.client.cancel_agent_execution, execution_id, reason=reason)
        cancelled(
            conn, output, record, wait=wait, timeout=timeout, watch=conn.client.watch_agent_execution,
            changes=render.phase_changes, text=render.agent_execution,
        )  # fmt: skip


@agent_execution.command()
@id_argument("aex")
@click.option("--force", is_flag=True, help="Cancel it first if it is still running, wait for it to stop, then delete.")
@address_option
@output_option
@timeout_option
def delete(execution_id: str, force: bool, address: str, output: str, timeout: float) -> None:
    """Delete a finished execution; one still PENDING or IN_PROGRESS needs --force (else exit 1).

    \b
    Examples:
      stigmer agent-execution delete aex-01JF8ZQ5W3K7N2C4R6T8V0XBYD
      stigmer agent-execution delete aex-01JF8ZQ5W3K7N2C4R6T8V0XBYD --force -o json
    """
    with api(address, timeout) as conn:  # with --force the client allows the server's wait (30 s) and more
        record = call(conn, output, conn.client.delete_agent_execution, execution_id, force=force)
    deleted(record, output, detail=record.phase.value)


def _follow(conn: Api, execution_id: str, output: str) -> None:
    last = None
    for view in each(conn, output, conn.client.watch_agent_execution(execution_id)):
        last = update = message_of(view)
        if output == "json":
            click.echo(json.dumps(to_dict(update), ensure_ascii=False))
        else:
            phase = render.phase_name(update.phase)
            click.echo(f"{render.ICONS.get(phase, '')} {phase}")
    if last is None:
        sys.exit(ExitCode.ERROR)
    if output == "text":
        click.echo(render.agent_execution(last))
    sys.exit(ExitCode.OK if render.phase_name(last.phase) == "COMPLETED" else ExitCode.ERROR)
