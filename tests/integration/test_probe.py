"""TemporalProbe against a real dev server: it answers, and every way of not answering is told apart."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stigmer.temporal.probe import ComebackProbe, TemporalProbe
from stigmer.temporal.tls import TemporalSecurity
from stigmer.testing.eventually import eventually
from stigmer.testing.ports import free_port
from stigmer.testing.temporal import TemporalDevServer
from tests.conftest import TcpProxyFactory
from tests.support.certs import make_certs
from tests.support.tls_proxy import TlsProxy

pytestmark = pytest.mark.temporal


async def test_a_running_temporal_answers(temporal: TemporalDevServer) -> None:
    probe = TemporalProbe(temporal.address)
    try:
        assert await probe.answers(2.0) is None
        assert await probe.answers(2.0) is None  # the channel is kept between probes
    finally:
        await probe.close()
        await probe.close()  # safe twice


async def test_nothing_listening_is_a_refusal() -> None:
    probe = TemporalProbe(f"127.0.0.1:{free_port()}")
    try:
        reason = await probe.answers(2.0)
    finally:
        await probe.close()
    assert reason is not None and "refused" in reason, reason


async def test_a_black_hole_is_caught_by_the_keepalive_long_before_the_deadline(
    temporal: TemporalDevServer, tcp_proxy_factory: TcpProxyFactory
) -> None:
    proxy = tcp_proxy_factory(temporal.address)
    probe = TemporalProbe(proxy.address)
    try:
        assert await probe.answers(2.0) is None
        proxy.blackhole()
        began = time.monotonic()
        reason = await probe.answers(10.0)  # a slow answer would be waited for this long
        took = time.monotonic() - began
        assert reason is not None and took < 4.0, (reason, took)
        proxy.forward()
        # The next probe dials afresh: no reconnect backoff, no connection the hole swallowed.
        began = time.monotonic()
        assert await probe.answers(2.0) is None
        assert time.monotonic() - began < 1.0
    finally:
        await probe.close()


async def test_an_accepting_but_silent_address_is_not_an_answer(tcp_proxy_factory: TcpProxyFactory) -> None:
    # What a load balancer in front of a dead Temporal can look like: TCP accepts, nothing speaks.
    proxy = tcp_proxy_factory(f"127.0.0.1:{free_port()}")
    proxy.blackhole()
    probe = TemporalProbe(proxy.address)
    try:
        assert await probe.answers(1.0) is not None
    finally:
        await probe.close()


@pytest.mark.parametrize("server_name", [None, "localhost"], ids=["by-address", "by-server-name"])
async def test_it_asks_through_tls_as_the_client_does(
    temporal: TemporalDevServer, tmp_path: Path, server_name: str | None
) -> None:
    certs = make_certs(tmp_path / "certs")
    proxy = TlsProxy(target=temporal.address, cert=certs.server_cert, key=certs.server_key).start()
    trusted = TemporalProbe(
        proxy.address, security=TemporalSecurity(tls=True, server_ca=certs.ca, server_name=server_name)
    )
    untrusted = TemporalProbe(proxy.address, security=TemporalSecurity(tls=True, server_ca=certs.other_ca))
    try:
        assert await trusted.answers(3.0) is None
        reason = await untrusted.answers(3.0)
        assert reason is not None and reason.startswith("UNAVAILABLE"), reason
    finally:
        await trusted.close()
        await untrusted.close()
        proxy.close()


async def test_the_comeback_probe_says_hello_before_it_opens_a_channel(
    temporal: TemporalDevServer, tcp_proxy_factory: TcpProxyFactory
) -> None:
    async def accepts() -> bool:
        return True

    held = tcp_proxy_factory(f"127.0.0.1:{free_port()}", upstream_down="hold")  # a balancer, nothing behind
    behind = ComebackProbe(held.address, port_open=accepts, rpc_timeout=0.5)
    direct = ComebackProbe(temporal.address, port_open=accepts, rpc_timeout=2.0)
    try:
        for probe in (behind, direct):
            assert await probe(0.0) is None  # asked in the background
        await eventually(lambda: behind.last_reason.startswith("nothing answered"), timeout=5, what="a 'no'")
        await eventually(lambda: direct.last_reason == "", timeout=5, what="an answer")
        assert await behind(0.0) is False and await direct(0.0) is True
    finally:
        await behind.close()
        await direct.close()
