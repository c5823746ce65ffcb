"""What every client command shares: the client (stigmer.client), output formats, errors and exit codes."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from stigmer.client import Client, Page
from stigmer.client.models import message_of
from stigmer.client.target import parse_address
from stigmer.config import DEFAULT_ADDRESS
from stigmer.contract import RETRY_AFTER_KEY, STATE_KEY
from stigmer.errors import ConfigError, DatabaseUnavailableError, ExitCode, StigmerError, TemporalUnavailableError
from stigmer.security import ClientSecurity, ClientSecurityError, tls_hint

T = TypeVar("T")

output_option = click.option(
    "-o",
    "--output",
    "output",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text for people; json prints one JSON object (same fields as the API) for scripts.",
)


def _check_address(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """--address must parse (stigmer.client's rules); the error names the option and the variable."""
    try:
        parse_address(value, setting="--address / STIGMER_SERVER_ADDRESS")
    except ConfigError as err:
        raise click.UsageError(str(err), ctx=ctx) from None
    return value


address_option = click.option(
    "--address",
    envvar="STIGMER_SERVER_ADDRESS",
    default=DEFAULT_ADDRESS,
    show_default=True,
    callback=_check_address,
    help="The stigmer server to talk to [env: STIGMER_SERVER_ADDRESS]: HOST:PORT, several IP addresses "
    "(10.0.0.1:7234,10.0.0.2:7234: calls go round-robin to those that answer) or a DNS name with several "
    "records. If it requires a token or TLS, set STIGMER_AUTH_TOKEN and STIGMER_TLS_CA in the environment "
    "(see `stigmer server --help`).",
)
data_dir_option = click.option(
    "--data-dir",
    envvar="STIGMER_DATA_DIR",
    show_envvar=True,
    type=click.Path(path_type=Path),
    help="The server's data dir: SQLite database, managed Temporal's database, logs/ and the pid file "
    "stigmer.pid [default: ~/.stigmer].",
)
timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds to wait for the server's answer.",
)


class ConfigUsageError(click.UsageError):
    """A usage error that exits with EX_CONFIG (78) rather than click's 2."""

    # Set on the class: click 8.5 declares exit_code a ClassVar, which an instance may not assign.
    exit_code = ExitCode.CONFIG


@dataclass(frozen=True)
class Api:
    """A command's connection: the client, and the address and deadline it was made with."""

    address: str
    timeout: float
    client: Client


@contextmanager
def api(address: str, timeout: float) -> Iterator[Api]:
    # Token and TLS come from the environment only (stigmer.security), never from a flag.
    client = Client(address=address, timeout=timeout, security=ClientSecurity.from_env())
    try:
        yield Api(address=address, timeout=timeout, client=client)
    finally:
        client.close()


def to_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def emit_json(payload: Any) -> None:
    click.echo(json.dumps(payload, ensure_ascii=False, indent=2))


def fail(error: StigmerError, *, address: str, output: str) -> NoReturn:
    """Print a server's refusal the way the contract says and exit with its code."""
    code, details, trailing = error.code or "UNKNOWN", error.details or str(error), error.trailing
    ours = isinstance(error, TemporalUnavailableError)  # the server refused: Temporal is down (stigmer.client)
    database = isinstance(error, DatabaseUnavailableError)  # the server refused: its database is down
    if code == "UNAVAILABLE" and not ours and not database:
        message = f"cannot reach the stigmer server at {address} ({details or 'no answer'}). " + (
            tls_hint(details, tls=ClientSecurity.from_env().tls)
            or "Start it with `stigmer server start` (add --managed-temporal to run a local Temporal too), "
            "or point STIGMER_SERVER_ADDRESS / --address at a running one."
        )
        exit_code = ExitCode.UNAVAILABLE
    elif code == "DEADLINE_EXCEEDED":
        message, exit_code = f"the stigmer server at {address} did not answer in time ({details})", ExitCode.TEMPFAIL
    else:
        message = details
        exit_code = ExitCode.TEMPFAIL if code == "UNAVAILABLE" else ExitCode.ERROR
    if output == "json":
        payload: dict[str, Any] = {"error": {"code": code, "message": message}}
        if ours:
            payload["error"]["connection_state"] = trailing.get(STATE_KEY, "")
            payload["error"]["retry_after_seconds"] = int(trailing.get(RETRY_AFTER_KEY, "0") or 0)
        emit_json(payload)
    else:
        click.echo(f"❌ Error: {message}", err=True)
        click.echo(f"Code: {code}", err=True)
        if ours and trailing.get(RETRY_AFTER_KEY):
            click.echo(
                f"Retry in about {trailing[RETRY_AFTER_KEY]}s (Temporal connection: {trailing.get(STATE_KEY, '?')}).",
                err=True,
            )
    sys.exit(exit_code)


@contextmanager
def refusals(api_: Api, output: str) -> Iterator[None]:
    """Inside: a refusal (or a broken stream) ends the process per the contract (:func:`fail`);
    client settings that cannot work (a CA file that cannot be read) are a usage error."""
    try:
        yield
    except ClientSecurityError as err:
        raise click.UsageError(str(err)) from err
    except StigmerError as error:
        fail(error, address=api_.address, output=output)


def call(api_: Api, output: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """One client call, under :func:`refusals`."""
    with refusals(api_, output):
        return fn(*args, **kwargs)


def each(api_: Api, output: str, items: Iterator[T]) -> Iterator[T]:
    """A client stream's items, under :func:`refusals`."""
    with refusals(api_, output):
        yield from items


PHASES = ["PENDING", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED"]


def paging_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--page-size and --page-token, the same on every list command."""
    fn = click.option("--page-token", default="", help="From a previous page's next_page_token.")(fn)
    return click.option("--page-size", type=click.IntRange(1, 1000), default=50, show_default=True)(fn)


phase_option = click.option(
    "--phase", type=click.Choice(PHASES, case_sensitive=False), help="Only executions in this phase."
)


def show(view: Any, output: str, text: Callable[[Any], str]) -> None:
    """One record (a client view): as JSON (the API's fields) or rendered for people."""
    message = message_of(view)
    if output == "json":
        emit_json(to_dict(message))
    else:
        click.echo(text(message))


def page_json(key: str, page: Page) -> dict[str, Any]:
    """A List answer as the API's JSON: ``{key: [...], "next_page_token": ...}``."""
    return {key: [to_dict(message_of(item)) for item in page.items], "next_page_token": page.next_page_token}


def is_tty() -> bool:
    return sys.stdout.isatty() and os.environ.get("TERM") != "dumb"
