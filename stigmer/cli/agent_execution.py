"""``stigmer agent-execution create | get | list | watch``."""

from __future__ import annotations

import json
import sys

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
@address_option
@output_option
@timeout_option
def create(
    agent: str, message: str, runtime_env: dict[str, str], follow: bool, address: str, output: str, timeout: float
) -> None:
    """Create an agent execution; prints "✅ Created: aex-..." when Temporal accepted it.

    While Temporal is unreachable this fails fast (exit 75) and nothing is stored: try again later.
    """
    with api(address, timeout) as conn:
        created = call(
            conn, output, conn.client.create_agent_execution, agent=agent, message=message, runtime_env=runtime_env
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
@paging_options
@address_option
@output_option
@timeout_option
def list_(phase: str | None, page_size: int, page_token: str, address: str, output: str, timeout: float) -> None:
    """List agent executions, newest first."""
    with api(address, timeout) as conn:
        page = call(
            conn,
            output,
            conn.client.list_agent_executions_page,
            phase=phase.upper() if phase else None,
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
