"""stigmer.temporal.wire against the real dev server, the TLS proxy and both kinds of load balancer."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stigmer.temporal.wire import Refused, replies_to_hello, split_host_port
from stigmer.testing.ports import free_port
from stigmer.testing.temporal import TemporalDevServer
from tests.conftest import TcpProxyFactory
from tests.support.certs import make_certs
from tests.support.tls_proxy import TlsProxy

pytestmark = pytest.mark.temporal


async def test_temporal_replies_to_an_http2_hello(temporal: TemporalDevServer) -> None:
    assert await replies_to_hello("127.0.0.1", temporal.port, tls=False, timeout=2.0) is True


async def test_a_tls_temporal_replies_to_a_client_hello(temporal: TemporalDevServer, tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    proxy = TlsProxy(target=temporal.address, cert=certs.server_cert, key=certs.server_key).start()
    try:
        host, port = split_host_port(proxy.address)
        assert await replies_to_hello(host, port, tls=True, server_name="localhost", timeout=2.0) is True
        assert await replies_to_hello(host, port, tls=True, timeout=2.0) is True  # no SNI for an address
    finally:
        proxy.close()


@pytest.mark.parametrize("upstream_down", ["close", "hold"])
async def test_a_balancer_with_nothing_behind_it_does_not(
    tcp_proxy_factory: TcpProxyFactory, upstream_down: str
) -> None:
    proxy = tcp_proxy_factory(f"127.0.0.1:{free_port()}", upstream_down=upstream_down)
    for tls in (False, True):
        began = time.monotonic()
        assert await replies_to_hello("127.0.0.1", proxy.port, tls=tls, timeout=0.5) is False
        assert time.monotonic() - began < 2.0  # bounded by its timeout when held


async def test_a_port_nobody_listens_on_refuses() -> None:
    with pytest.raises(Refused):
        await replies_to_hello("127.0.0.1", free_port(), tls=False, timeout=1.0)


def test_split_host_port() -> None:
    assert split_host_port("temporal.prod:7233") == ("temporal.prod", 7233)
    assert split_host_port("[::1]:7233") == ("::1", 7233)
    assert split_host_port(":7233") == ("127.0.0.1", 7233)
