"""Misconfiguration is not an outage (issue 12): against the real dev server, each case reads as
what to fix, in the state's recorded cause, and is retried at the backoff cap, not every second.

The dev server has no TLS and checks no API keys: TLS cases go through the repo's TLS proxy, a
refused API key through a gateway that checks keys (tests/support/key_gateway.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from statemachine import State
from stigmer.security import Secret
from stigmer.temporal.connection import ConnectionSettings
from stigmer.temporal.names import TaskQueues
from stigmer.temporal.tls import TemporalSecurity
from stigmer.testing.eventually import eventually
from stigmer.testing.temporal import TemporalDevServer
from tests.integration.connection_rig import connection_rig
from tests.support.certs import Certs, make_certs
from tests.support.key_gateway import ApiKeyGateway
from tests.support.tls_proxy import TlsProxy

pytestmark = pytest.mark.temporal


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def tls_proxy(temporal: TemporalDevServer, certs: Certs) -> Iterator[TlsProxy]:
    proxy = TlsProxy(target=temporal.address, cert=certs.server_cert, key=certs.server_key).start()
    yield proxy
    proxy.close()


async def misconfigured(settings: ConnectionSettings, tmp_path: Path, says: str) -> None:
    settings = ConnectionSettings(**{**settings.__dict__, "queues": TaskQueues.with_suffix(uuid.uuid4().hex[:8])})
    async with connection_rig(settings, tmp_path) as rig:
        lifecycle = rig.connection.lifecycle

        def failed_once() -> bool:
            return lifecycle.snapshot().attempt >= 1 and lifecycle.state.waiting_to_retry

        await eventually(failed_once, timeout=15, what="a failed first attempt")
        snapshot = lifecycle.snapshot()
        assert says in snapshot.last_error, snapshot.last_error
        assert lifecycle.misconfigured
        # At the backoff cap (30 s, -20 % jitter at most), not the 1 s of an outage's first retry.
        assert snapshot.next_retry_in is not None and snapshot.next_retry_in >= 20, snapshot.next_retry_in
        # A request does not draw an attempt either.
        assert await rig.connection.wait_available() is False
        assert lifecycle.snapshot().attempt == snapshot.attempt


async def test_a_namespace_that_does_not_exist(temporal: TemporalDevServer, tmp_path: Path) -> None:
    await misconfigured(
        ConnectionSettings(host_port=temporal.address, namespace="prod-nope"),
        tmp_path,
        f"namespace 'prod-nope' does not exist on {temporal.address}: create it with",
    )


async def test_tls_to_a_plaintext_port(temporal: TemporalDevServer, tmp_path: Path) -> None:
    await misconfigured(
        ConnectionSettings(host_port=temporal.address, security=TemporalSecurity(tls=True)),
        tmp_path,
        f"{temporal.address} does not speak TLS (a plaintext port?)",
    )


async def test_plaintext_to_a_tls_port(tls_proxy: TlsProxy, tmp_path: Path) -> None:
    await misconfigured(
        ConnectionSettings(host_port=tls_proxy.address),
        tmp_path,
        f"{tls_proxy.address} speaks TLS but we connect in plaintext: set TEMPORAL_TLS=true",
    )


async def test_a_certificate_from_a_ca_we_do_not_trust(tls_proxy: TlsProxy, certs: Certs, tmp_path: Path) -> None:
    security = TemporalSecurity(tls=True, server_ca=certs.other_ca)
    await misconfigured(
        ConnectionSettings(host_port=tls_proxy.address, security=security),
        tmp_path,
        "is not signed by a CA we trust: set TEMPORAL_TLS_CA",
    )


async def test_a_certificate_for_another_name(tls_proxy: TlsProxy, certs: Certs, tmp_path: Path) -> None:
    security = TemporalSecurity(tls=True, server_ca=certs.ca, server_name="temporal.example")
    await misconfigured(
        ConnectionSettings(host_port=tls_proxy.address, security=security),
        tmp_path,
        "does not name the host we asked for: set TEMPORAL_TLS_SERVER_NAME",
    )


async def test_a_port_that_does_not_speak_grpc(temporal: TemporalDevServer, tmp_path: Path) -> None:
    address = f"127.0.0.1:{temporal.http_port}"  # Temporal's own HTTP API: HTTP/1, not gRPC
    await misconfigured(ConnectionSettings(host_port=address), tmp_path, f"{address} does not speak gRPC")


@pytest.fixture
def key_gateway(temporal: TemporalDevServer, certs: Certs) -> Iterator[ApiKeyGateway]:
    gateway = ApiKeyGateway(
        target=temporal.address, cert=certs.server_cert, key=certs.server_key, api_key="the-right-key"
    ).start()
    yield gateway
    gateway.close()


def keyed(gateway: ApiKeyGateway, certs: Certs, key: str) -> ConnectionSettings:
    security = TemporalSecurity(tls=True, server_ca=certs.ca, api_key=Secret(key))
    return ConnectionSettings(host_port=gateway.address, security=security)


async def test_an_api_key_the_server_refuses(key_gateway: ApiKeyGateway, certs: Certs, tmp_path: Path) -> None:
    await misconfigured(
        keyed(key_gateway, certs, "a-wrong-key"),
        tmp_path,
        f"Temporal at {key_gateway.address} refused our credentials (UNAUTHENTICATED",
    )
    assert key_gateway.refused >= 1


async def test_the_right_api_key_connects_through_the_same_gateway(
    key_gateway: ApiKeyGateway, certs: Certs, tmp_path: Path
) -> None:
    # The control: the gateway forwards what it lets through, workers and health probe included.
    settings = keyed(key_gateway, certs, "the-right-key")
    settings = ConnectionSettings(**{**settings.__dict__, "queues": TaskQueues.with_suffix(uuid.uuid4().hex[:8])})
    async with connection_rig(settings, tmp_path) as rig:
        await eventually(lambda: rig.connection.lifecycle.state is State.CONNECTED, timeout=15, what="CONNECTED")
    assert key_gateway.refused == 0
