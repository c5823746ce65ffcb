"""TemporalProbe against a real dev server: it answers, and every way of not answering is told apart."""

from __future__ import annotations

import time

import pytest

from stigmer.temporal.probe import TemporalProbe
from tests.conftest import TcpProxyFactory
from tests.support.ports import free_port
from tests.support.temporal_server import TemporalDevServer

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
