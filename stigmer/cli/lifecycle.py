"""What the execution and workflow commands share about a record's life: ids given on the command
line, request ids for creates that are safe to retry, ``--created-after``, following an execution
to its end (``cancel --wait``, ``workflow-execution watch``), and the cancel and delete answers."""

from __future__ import annotations

import json
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn

import click

from stigmer.cli import render
from stigmer.cli.common import Api, emit_json, refusals, to_dict
from stigmer.client.models import message_of
from stigmer.errors import ExitCode, StigmerError
from stigmer.outage import parse_duration

# click 8.4 made ParamType generic; older releases (pyproject allows >=8.1) cannot be subscripted
# at run time, so only mypy sees ParamType[datetime] (as in stigmer/cli/server.py).
if TYPE_CHECKING:
    _DatetimeParamType = click.ParamType[datetime]
else:
    _DatetimeParamType = click.ParamType

# The server's id shape (stigmer.store.ids): prefix, "-", a canonical 26-character ULID.
_ULID = r"[0-7][0-9A-HJKMNP-TV-Z]{25}"
_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
KINDS = {"aex": "agent-execution", "wex": "workflow-execution", "wf": "workflow"}


def id_argument(prefix: str, *, shell_complete: Any = None) -> Callable[[Any], Any]:
    """The ID argument of a command about one kind of record, checked before anything is sent."""

    def check(ctx: click.Context, param: click.Parameter, value: str) -> str:
        if re.fullmatch(f"{prefix}-{_ULID}", value):
            return value
        other = value.partition("-")[0]
        hint = ""
        if other in KINDS and other != prefix and ctx.command.name:
            hint = f" ({value} is a {KINDS[other].replace('-', ' ')} id: `stigmer {KINDS[other]} {ctx.command.name}`)"
        raise click.BadParameter(
            f"must be '{prefix}-' followed by a 26-character ULID, as `stigmer {KINDS[prefix]} create` prints "
            f"it, got {value!r}{hint}",
            ctx=ctx,
            param=param,
        )

    return click.argument("execution_id", metavar="ID", callback=check, shell_complete=shell_complete)


request_id_option = click.option(
    "--request-id",
    type=click.UUID,
    metavar="UUID",
    help="Makes the create safe to retry: run it again with the same UUID (within 24 h) and you get the "
    "record the first run made, never a second one. Default: a fresh UUID per run (shown as request_id "
    "with -o json).",
)


def request_id_of(given: uuid.UUID | None) -> str:
    """The request id a create command sends: the one given, else one of its own for this run."""
    return str(given if given is not None else uuid.uuid4())


class _When(_DatetimeParamType):
    """An ISO 8601 time (no zone: local time, as the CLI prints times) or how long ago (10m, 2h, 1d)."""

    name = "when"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        ago = _AGO.match(text)
        if ago:
            number, unit = ago.groups()
            try:
                seconds = parse_duration(f"{number}h") * 24 if unit == "d" else parse_duration(f"{number}{unit}")
            except ValueError:  # 0m
                self.fail(f"how long ago must be more than 0, got {text!r}", param, ctx)
            return datetime.now(UTC) - timedelta(seconds=seconds)
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            self.fail(
                f"expected an ISO 8601 time like 2026-12-04T10:00:00Z or how long ago like 10m, 2h or 1d, got {text!r}",
                param,
                ctx,
            )
        return when if when.tzinfo is not None else when.astimezone()  # naive: local time


created_after_option = click.option(
    "--created-after",
    type=_When(),
    metavar="WHEN",
    help="Only those created after WHEN: an ISO 8601 time (2026-12-04T10:00:00Z; without a zone it is "
    "local time) or how long ago (30s, 10m, 2h, 1d).",
)

reason_option = click.option("--reason", default="", metavar="TEXT", help="Why; recorded as cancel_reason.")
wait_option = click.option(
    "--wait", is_flag=True, help="Follow it until it has stopped and print its final phase; exit 0 only if CANCELLED."
)
cancel_timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds to wait for the server's answer and, with --wait, for the execution to stop (exit 75 if not).",
)


def stop(message: str, *, code: str, exit_code: int, output: str) -> NoReturn:
    """End with an error of the CLI's own (not a server refusal), shaped like :func:`common.fail`'s."""
    if output == "json":
        emit_json({"error": {"code": code, "message": message}})
    else:
        click.echo(f"❌ Error: {message}", err=True)
        click.echo(f"Code: {code}", err=True)
    sys.exit(exit_code)


def follow(
    conn: Api,
    output: str,
    execution_id: str,
    updates: Iterator[Any],
    *,
    changes: Callable[[Any | None, Any], list[str]],
    timeout: float | None,
    json_lines: bool = True,
) -> Any:
    """Print each change of a watched execution until a terminal phase; return the last record (a
    message). Gives up at the stream's ``timeout`` (exit 75); a stream that ends early exits 1."""
    last: Any = None
    with refusals(conn, output):
        try:
            for view in updates:
                update = message_of(view)
                if output != "json":
                    for line in changes(last, update):
                        click.echo(line)
                elif json_lines:
                    click.echo(json.dumps(to_dict(update), ensure_ascii=False))
                last = update
        except StigmerError as error:
            if error.code == "DEADLINE_EXCEEDED" and last is not None:
                waited = f" after {timeout:g}s" if timeout else ""
                stop(
                    f"gave up{waited}: {execution_id} is still {render.phase_name(last.phase)}",
                    code="DEADLINE_EXCEEDED",
                    exit_code=ExitCode.TEMPFAIL,
                    output=output,
                )
            raise
    if last is None or render.phase_name(last.phase) not in render.TERMINAL:
        # Only a server going away mid-stream ends it early; the execution itself runs on.
        where = "before sending anything" if last is None else f"while {render.phase_name(last.phase)}"
        group = KINDS[execution_id.partition("-")[0]]
        stop(
            f"the server at {conn.address} ended the stream {where}; "
            f"check again with `stigmer {group} watch {execution_id}`",
            code="ABORTED",
            exit_code=ExitCode.ERROR,
            output=output,
        )
    return last


def cancelled(
    conn: Api,
    output: str,
    record: Any,
    *,
    wait: bool,
    timeout: float,
    watch: Callable[..., Iterator[Any]],
    changes: Callable[[Any | None, Any], list[str]],
    text: Callable[[Any], str],
) -> NoReturn:
    """The answer to a cancel (``record``, a view): what was asked and, with ``wait``, how it ended."""
    message = message_of(record)
    if output == "text":
        who = f"by {message.cancelled_by}" + (f": {message.cancel_reason}" if message.cancel_reason else "")
        state = "Cancelled" if render.phase_name(message.phase) == "CANCELLED" else "Cancel requested"
        click.echo(f"🚫 {state}: {message.id} ({who})")
    if wait and not record.phase.terminal:
        message = follow(
            conn, output, message.id, watch(message.id, timeout=timeout), changes=changes, timeout=timeout,
            json_lines=False,
        )  # fmt: skip
    if output == "json":
        emit_json(to_dict(message))
    elif wait:
        click.echo(text(message))
    phase = render.phase_name(message.phase)
    if wait and phase != "CANCELLED":
        click.echo(f"It finished {phase} before the cancel took effect.", err=True)
    sys.exit(ExitCode.OK if not wait or phase == "CANCELLED" else ExitCode.ERROR)


def deleted(record: Any, output: str, *, detail: str) -> None:
    """The answer to a delete: the record as it was (-o json), or one line naming it."""
    if output == "json":
        emit_json(to_dict(message_of(record)))
    else:
        click.echo(f"🗑️  Deleted: {record.id} ({detail})")
