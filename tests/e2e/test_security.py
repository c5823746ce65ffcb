"""Locked doors with real processes: the installed `stigmer` server and CLI, and Temporal over mTLS.

Only 127.0.0.1 is ever bound or dialled: the refusals for other addresses happen before any
socket is opened, and token/TLS work the same on loopback. Certificates are made at test time.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stigmer.testing.factories import StigmerServerFactory
from stigmer.testing.ports import free_port, is_port_free
from stigmer.testing.server import StigmerServerProcess, stigmer_binary, wait_for_log
from tests.support.certs import Certs, make_certs
from tests.support.tls_proxy import TlsProxy

TOKEN = "e2e-Token-9f8a7b6c5d4e3f2a1b0c"
WRONG = "e2e-Wrong-0000000000000000000"
API_KEY = "tmprl-e2e-api-key-4242424242424242"
#: Variables a developer's shell may carry that would change what these tests see.
SCRUBBED = (
    "STIGMER_AUTH_TOKEN",
    "STIGMER_TLS_CA",
    "STIGMER_TLS",
    "STIGMER_TLS_SERVER_NAME",
    "STIGMER_SERVER_ADDRESS",
    "STIGMER_TLS_CERT",
    "STIGMER_TLS_KEY",
    "TEMPORAL_API_KEY",
    "TEMPORAL_TLS_CERT",
    "TEMPORAL_TLS_KEY",
    "TEMPORAL_TLS_CA",
    "TEMPORAL_ADDRESS",
    "TEMPORAL_PROFILE",
    "TEMPORAL_CONFIG_FILE",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SCRUBBED:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [stigmer_binary(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "NO_COLOR": "1", **(env or {})},
    )


def nowhere() -> str:
    return f"127.0.0.1:{free_port()}"  # a Temporal address nobody listens on: the API serves anyway


# ------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize("address", ["0.0.0.0", "[::]"])
def test_a_non_loopback_address_without_protection_refuses_to_start(tmp_path: Path, address: str) -> None:
    port = free_port()
    result = cli(
        "server",
        "start",
        "--address",
        f"{address}:{port}",
        "--data-dir",
        str(tmp_path),
        "--temporal-host-port",
        nowhere(),
    )
    assert result.returncode == 78, result.stderr
    assert f"refusing to listen on {address}:{port}" in result.stderr
    for named in ("STIGMER_AUTH_TOKEN", "--auth-token", "--tls-cert/--tls-key", "--insecure"):
        assert named in result.stderr, result.stderr
    assert is_port_free(port) and not (tmp_path / "stigmer.db").exists()  # refused before binding or opening


def test_the_refusal_also_covers_the_environment_variable(tmp_path: Path) -> None:
    port = free_port()
    result = cli(
        "server",
        "start",
        "--data-dir",
        str(tmp_path),
        "--temporal-host-port",
        nowhere(),
        env={"STIGMER_SERVER_ADDRESS": f"0.0.0.0:{port}"},
    )
    assert result.returncode == 78 and f"refusing to listen on 0.0.0.0:{port}" in result.stderr, result.stderr


def test_unusable_tls_files_stop_the_server_naming_the_flags(tmp_path: Path, certs: Certs) -> None:
    result = cli(
        "server",
        "start",
        "--address",
        nowhere(),
        "--data-dir",
        str(tmp_path),
        "--temporal-host-port",
        nowhere(),
        "--tls-cert",
        str(certs.server_cert),
        "--tls-key",
        str(certs.client_key),
    )
    assert result.returncode == 78, result.stdout + result.stderr
    assert "[ERROR] --tls-cert" in result.stderr and "not a usable PEM certificate" in result.stderr, result.stderr
    assert not (tmp_path / "stigmer.db").exists()  # checked before anything was opened


# ------------------------------------------------------------------------------ token


@pytest.fixture
def start_server(
    stigmer_server_factory: StigmerServerFactory, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., StigmerServerProcess]:
    """Start `stigmer server start` with extra env (only for the server process) and args."""

    def start(
        *, env: dict[str, str], extra: list[str] | None = None, temporal: str | None = None
    ) -> StigmerServerProcess:
        with monkeypatch.context() as scoped:  # the server process inherits os.environ at spawn
            for name, value in env.items():
                scoped.setenv(name, value)
            return stigmer_server_factory(temporal=temporal or nowhere(), extra=extra)

    return start


def at(server: StigmerServerProcess, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return cli(*args, "--address", server.address, env=env)


def test_with_a_token_every_rpc_but_health_needs_it_and_it_never_shows(
    start_server: Callable[..., StigmerServerProcess],
) -> None:
    server = start_server(env={"STIGMER_AUTH_TOKEN": TOKEN}, extra=["--log-level", "DEBUG"])
    outputs: list[str] = []
    for env in ({}, {"STIGMER_AUTH_TOKEN": WRONG}):
        for args in (
            ("server", "status"),
            ("agent-execution", "list"),
            ("agent-execution", "get", "aex-nope"),
            ("agent-execution", "watch", "aex-nope"),
        ):
            result = at(server, *args, env=env)
            outputs.append(result.stdout + result.stderr)
            assert result.returncode == 1 and "Code: UNAUTHENTICATED" in result.stderr, (args, env, result.stderr)
            assert "STIGMER_AUTH_TOKEN" in result.stderr
    as_json = at(server, "agent-execution", "list", "-o", "json", env={"STIGMER_AUTH_TOKEN": WRONG})
    assert json.loads(as_json.stdout)["error"]["code"] == "UNAUTHENTICATED"
    outputs.append(as_json.stdout + as_json.stderr)
    # The right token from the environment: the server answers (Temporal is not there: exit 3).
    ok = at(server, "server", "status", env={"STIGMER_AUTH_TOKEN": TOKEN})
    assert ok.returncode == 3 and "Temporal connection: DISCONNECTED" in ok.stdout, ok.stderr
    listed = at(server, "agent-execution", "list", "-o", "json", env={"STIGMER_AUTH_TOKEN": TOKEN})
    assert listed.returncode == 0, listed.stderr
    # Health answers without a token (load balancers, grpc_health_probe).
    with grpc.insecure_channel(server.address) as channel:
        answer = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    assert server.stop() == 0
    log = server.log()
    assert "protection=token" in log and "Rejected a call without a valid token" in log
    for text in (*outputs, log):
        assert TOKEN not in text and WRONG not in text


# ------------------------------------------------------------------------------ TLS


def test_tls_with_a_token_and_the_cli_trusting_our_ca(
    start_server: Callable[..., StigmerServerProcess], certs: Certs
) -> None:
    server = start_server(
        env={"STIGMER_AUTH_TOKEN": TOKEN},
        extra=["--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key)],
    )
    trusted = {"STIGMER_AUTH_TOKEN": TOKEN, "STIGMER_TLS_CA": str(certs.ca)}
    ok = at(server, "server", "status", env=trusted)
    assert ok.returncode == 3 and "DISCONNECTED" in ok.stdout, ok.stderr

    plaintext = at(server, "server", "status", env={"STIGMER_AUTH_TOKEN": TOKEN})
    assert plaintext.returncode == 69 and "if it speaks TLS, set STIGMER_TLS_CA" in plaintext.stderr, plaintext.stderr
    untrusted = at(server, "server", "status", env={"STIGMER_AUTH_TOKEN": TOKEN, "STIGMER_TLS_CA": str(certs.other_ca)})
    assert untrusted.returncode == 69 and "The TLS handshake failed" in untrusted.stderr, untrusted.stderr
    no_token = at(server, "server", "status", env={"STIGMER_TLS_CA": str(certs.ca)})
    assert no_token.returncode == 1 and "UNAUTHENTICATED" in no_token.stderr, no_token.stderr
    unreadable = at(server, "server", "status", env={"STIGMER_TLS_CA": str(certs.ca) + ".missing"})
    assert unreadable.returncode == 2 and "STIGMER_TLS_CA=" in unreadable.stderr, unreadable.stderr
    assert server.stop() == 0
    assert "protection=token + TLS" in server.log() and TOKEN not in server.log()


# ------------------------------------------------------------------------------ Temporal over mTLS


@pytest.fixture
def tls_proxy(certs: Certs) -> Iterator[Callable[[str], TlsProxy]]:
    proxies: list[TlsProxy] = []

    def make(target: str) -> TlsProxy:
        proxy = TlsProxy(target=target, cert=certs.server_cert, key=certs.server_key, client_ca=certs.ca)
        proxies.append(proxy)
        return proxy.start()

    yield make
    for proxy in proxies:
        proxy.close()


@pytest.mark.temporal
def test_temporal_over_mtls_with_an_api_key(temporal_dev_server_factory, tls_proxy, start_server, certs: Certs) -> None:
    """`temporal server start-dev` has no TLS flags: a proxy demanding mTLS stands in front of it."""
    temporal = temporal_dev_server_factory()
    proxy = tls_proxy(temporal.address)
    server = start_server(
        env={
            "TEMPORAL_TLS_CERT": str(certs.client_cert),
            "TEMPORAL_TLS_KEY": str(certs.client_key),
            "TEMPORAL_TLS_CA": str(certs.ca),
            "TEMPORAL_API_KEY": API_KEY,
        },
        temporal=proxy.address,
    )
    wait_for_log(server, "✅ Initial Temporal connection successful", timeout=20)
    created = server.cli("agent-execution", "create", "--agent", "echo", "--message", "over mTLS")
    assert created.code == 0 and created.out.startswith("✅ Created: aex-"), created.text
    execution = created.out.split("Created: ", 1)[1].strip()
    watched = server.cli("agent-execution", "watch", execution)
    assert watched.code == 0 and "COMPLETED" in watched.out, watched.text
    # Every byte went through TLS with our client certificate: the proxy speaks nothing else.
    assert proxy.client_certs >= 1
    assert server.stop() == 0
    log = server.log()
    assert "security=mTLS + API key" in log and API_KEY not in log


@pytest.mark.temporal
def test_temporal_refuses_plaintext_through_the_proxy(temporal_dev_server_factory, tls_proxy, start_server) -> None:
    """The negative twin: without the TLS settings the same path never connects, and says so."""
    proxy = tls_proxy(temporal_dev_server_factory().address)
    server = start_server(env={}, temporal=proxy.address)
    wait_for_log(server, "Failed initial Temporal connection - will retry automatically", timeout=20)
    assert "✅ Initial Temporal connection successful" not in server.log()
    assert proxy.client_certs == 0
