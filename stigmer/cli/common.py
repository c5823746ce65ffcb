"""What every client command shares: the gRPC channel, output formats, errors and exit codes."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar, cast

import click
import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from stigmer.config import DEFAULT_ADDRESS
from stigmer.contract import RETRY_AFTER_KEY, STATE_KEY, UNAVAILABLE_MESSAGE
from stigmer.errors import ExitCode
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
address_option = click.option(
    "--address",
    envvar="STIGMER_SERVER_ADDRESS",
    default=DEFAULT_ADDRESS,
    show_default=True,
    help="The stigmer server to talk to [env: STIGMER_SERVER_ADDRESS]. If it requires a token or TLS, set "
    "STIGMER_AUTH_TOKEN and STIGMER_TLS_CA in the environment (see `stigmer server --help`).",
)
timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds to wait for the server's answer.",
)


@dataclass(frozen=True)
class Api:
    address: str
    timeout: float
    channel: grpc.Channel

    def stub(self, factory: Callable[[grpc.Channel], T]) -> T:
        return factory(self.channel)


@contextmanager
def api(address: str, timeout: float) -> Iterator[Api]:
    # No client-side size cap: a workflow execution with many agent steps can exceed gRPC's 4 MiB default.
    options = [("grpc.enable_retries", 0), ("grpc.max_receive_message_length", -1)]
    try:
        # Token and TLS come from the environment only (stigmer.security), never from a flag.
        channel = ClientSecurity.from_env().channel(address, options=options)
    except ClientSecurityError as err:
        raise click.UsageError(str(err)) from err
    try:
        yield Api(address=address, timeout=timeout, channel=channel)
    finally:
        channel.close()


def to_dict(message: Message) -> dict[str, Any]:
    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


def emit_json(payload: Any) -> None:
    click.echo(json.dumps(payload, ensure_ascii=False, indent=2))


def fail(error: grpc.RpcError, *, address: str, output: str) -> NoReturn:
    """Print a gRPC error the way the contract says and exit with its code."""
    code: grpc.StatusCode = error.code()
    details: str = error.details() or ""
    # grpc's metadatum is a (key, value) namedtuple; types-grpcio declares it a plain class with
    # .key and .value. Values are str except under '-bin' keys, and only our text keys are read.
    trailing = dict(cast("tuple[tuple[str, str], ...]", error.trailing_metadata() or ()))
    ours = STATE_KEY in trailing or details == UNAVAILABLE_MESSAGE
    if code == grpc.StatusCode.UNAVAILABLE and not ours:
        message = f"cannot reach the stigmer server at {address} ({details or 'no answer'}). " + (
            tls_hint(details, tls=ClientSecurity.from_env().tls)
            or "Start it with `stigmer server start` (add --managed-temporal to run a local Temporal too), "
            "or point STIGMER_SERVER_ADDRESS / --address at a running one."
        )
        exit_code = ExitCode.UNAVAILABLE
    elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
        message, exit_code = f"the stigmer server at {address} did not answer in time ({details})", ExitCode.TEMPFAIL
    else:
        message = details
        exit_code = ExitCode.TEMPFAIL if code == grpc.StatusCode.UNAVAILABLE else ExitCode.ERROR
    if output == "json":
        payload: dict[str, Any] = {"error": {"code": code.name, "message": message}}
        if ours:
            payload["error"]["connection_state"] = trailing.get(STATE_KEY, "")
            payload["error"]["retry_after_seconds"] = int(trailing.get(RETRY_AFTER_KEY, "0") or 0)
        emit_json(payload)
    else:
        click.echo(f"❌ Error: {message}", err=True)
        click.echo(f"Code: {code.name}", err=True)
        if ours and trailing.get(RETRY_AFTER_KEY):
            click.echo(
                f"Retry in about {trailing[RETRY_AFTER_KEY]}s (Temporal connection: {trailing.get(STATE_KEY, '?')}).",
                err=True,
            )
    sys.exit(exit_code)


def call(api_: Api, output: str, fn: Callable[..., T], request: Any) -> T:
    """One unary call with the command's deadline; errors end the process per the contract."""
    try:
        return fn(request, timeout=api_.timeout)
    except grpc.RpcError as error:
        fail(error, address=api_.address, output=output)


PHASES = ["PENDING", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED"]


def paging_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--page-size and --page-token, the same on every list command."""
    fn = click.option("--page-token", default="", help="From a previous page's next_page_token.")(fn)
    return click.option("--page-size", type=click.IntRange(1, 1000), default=50, show_default=True)(fn)


phase_option = click.option(
    "--phase", type=click.Choice(PHASES, case_sensitive=False), help="Only executions in this phase."
)


def show(message: Message, output: str, text: Callable[[Any], str]) -> None:
    """One record: as JSON (the API's fields) or rendered for people."""
    if output == "json":
        emit_json(to_dict(message))
    else:
        click.echo(text(message))


def is_tty() -> bool:
    return sys.stdout.isatty() and os.environ.get("TERM") != "dumb"
