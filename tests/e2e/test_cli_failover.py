"""The installed `stigmer` CLI with `--address a,b` (issue 16, "clients fail over"): it reaches
whichever server is alive, in either order and from STIGMER_SERVER_ADDRESS too, says so when none
is, refuses a list it cannot use, and works over TLS with a token. Real server processes, killed
by PID."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable

import pytest

from stigmer.client import Client
from stigmer.security import ClientSecurity
from stigmer.temporal import names
from stigmer.testing.factories import StigmerServerFactory
from stigmer.testing.ports import free_port
from stigmer.testing.server import StigmerServerProcess, stigmer_binary
from tests.support.certs import Certs, make_certs

pytestmark = pytest.mark.timeout(180)
TOKEN = "e2e-Failover-Token-5c4b3a29"
QUEUES = (names.AGENT_EXECUTION_QUEUE_ENV, names.WORKFLOW_EXECUTION_QUEUE_ENV, names.WORKFLOW_VALIDATION_QUEUE_ENV)
SCRUBBED = ("STIGMER_SERVER_ADDRESS", "STIGMER_AUTH_TOKEN", "STIGMER_TLS_CA", "STIGMER_TLS", "STIGMER_TLS_SERVER_NAME")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SCRUBBED:
        monkeypatch.delenv(name, raising=False)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [stigmer_binary(), *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
    )


@pytest.fixture
def start_server(
    stigmer_server_factory: StigmerServerFactory, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., StigmerServerProcess]:
    """A server with task queues of its own and extra env (for its process only)."""

    def start(
        *, temporal: str, env: dict[str, str] | None = None, extra: list[str] | None = None
    ) -> StigmerServerProcess:
        suffix = uuid.uuid4().hex[:10]
        with monkeypatch.context() as scoped:  # the process inherits os.environ when it is spawned
            for name in QUEUES:
                scoped.setenv(name, f"{name.lower()}-{suffix}")
            for name, value in (env or {}).items():
                scoped.setenv(name, value)
            server: StigmerServerProcess = stigmer_server_factory(temporal=temporal, extra=extra)
            return server

    return start


@pytest.mark.temporal
def test_the_cli_reaches_whichever_server_is_alive(temporal, start_server) -> None:
    a, b = start_server(temporal=temporal.address), start_server(temporal=temporal.address)
    both = f"{a.address},{b.address}"
    waited = cli("server", "wait", "--timeout", "30", "--address", both)
    assert waited.returncode == 0, waited.stderr
    a.kill()  # SIGKILL, by PID

    for address in (both, f"{b.address},{a.address}"):  # the dead one first or second
        status = cli("server", "status", "--address", address, "-o", "json")
        assert status.returncode == 0 and json.loads(status.stdout)["state"] == "CONNECTED", status.stderr
        created = cli(
            "agent-execution", "create", "--agent", "echo", "--message", "hi", "--address", address, "-o", "json"
        )
        assert created.returncode == 0, created.stderr
        execution = json.loads(created.stdout)["id"]
        followed = cli("agent-execution", "watch", execution, "--address", address, "-o", "json")
        assert followed.returncode == 0 and '"COMPLETED"' in followed.stdout, followed.stderr
        listed = cli("agent-execution", "list", "--address", address, "-o", "json")
        assert listed.returncode == 0 and execution in listed.stdout, listed.stderr
    from_env = cli("server", "status", env={"STIGMER_SERVER_ADDRESS": both})
    assert from_env.returncode == 0 and "CONNECTED" in from_env.stdout, from_env.stderr

    b.kill()
    nobody = cli("agent-execution", "list", "--address", both)
    assert nobody.returncode == 69, nobody.stderr
    assert f"cannot reach the stigmer server at {both} (" in nobody.stderr


@pytest.mark.parametrize(
    ("address", "says"),
    [
        (
            "127.0.0.1:7234,stigmer-2.internal:7234",
            "'stigmer-2.internal:7234' in '127.0.0.1:7234,stigmer-2.internal:7234' is a host name",
        ),
        ("127.0.0.1:7234,", "has an empty entry"),
        ("127.0.0.1:7234,[::1]:7234", "mixes IPv4 and IPv6"),
    ],
)
def test_a_list_it_cannot_use_is_a_usage_error(address: str, says: str) -> None:
    for args, env in ((["--address", address], {}), ([], {"STIGMER_SERVER_ADDRESS": address})):
        result = cli("agent-execution", "list", *args, env=env)
        assert result.returncode == 2, result.stderr
        assert "--address / STIGMER_SERVER_ADDRESS" in result.stderr and says in result.stderr
        assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def test_tls_and_a_token_with_two_servers(start_server, certs: Certs) -> None:
    tls = ["--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key)]
    servers = [  # Temporal is nowhere: the API answers anyway (status: exit 3, DISCONNECTED)
        start_server(temporal=f"127.0.0.1:{free_port()}", env={"STIGMER_AUTH_TOKEN": TOKEN}, extra=tls)
        for _ in range(2)
    ]
    both = ",".join(s.address for s in servers)
    trusted = {"STIGMER_AUTH_TOKEN": TOKEN, "STIGMER_TLS_CA": str(certs.ca)}
    # One host on two ports: its certificate is checked against that host (127.0.0.1), or the name given.
    for env in (trusted, {**trusted, "STIGMER_TLS_SERVER_NAME": "localhost"}):
        status = cli("server", "status", "--address", both, env=env)
        assert status.returncode == 3 and "DISCONNECTED" in status.stdout, status.stderr
    security = ClientSecurity.from_env(trusted)
    with Client(address=both, security=security, timeout=10) as client:
        assert [client.status().state for _ in range(4)] == ["DISCONNECTED"] * 4
        servers[0].kill()
        assert [client.status().state for _ in range(4)] == ["DISCONNECTED"] * 4
    listed = cli("agent-execution", "list", "--address", both, "-o", "json", env=trusted)
    assert listed.returncode == 0, listed.stderr
    wrong = cli("agent-execution", "list", "--address", both, env={**trusted, "STIGMER_AUTH_TOKEN": TOKEN + "x"})
    assert wrong.returncode == 1 and "UNAUTHENTICATED" in wrong.stderr, wrong.stderr
    for result in (listed, wrong):
        assert TOKEN not in result.stdout + result.stderr
