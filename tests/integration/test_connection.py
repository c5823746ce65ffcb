"""TemporalConnection against a real Temporal dev server, killed and restarted by the tests."""

from __future__ import annotations

import asyncio
import gc
import itertools
import signal
import time
from datetime import timedelta

import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client

from statemachine import State
from stigmer.errors import TemporalUnavailableError
from stigmer.testing.eventually import eventually
from stigmer.testing.ports import free_port
from tests.integration.connection_rig import connection_rig, fast_settings, pollers

pytestmark = pytest.mark.temporal


async def test_delayed_start_connects_within_two_seconds_of_temporal_answering(temporal_dev_server_factory, tmp_path):
    port = free_port()
    address = f"127.0.0.1:{port}"
    settings = fast_settings(address)
    async with connection_rig(settings, tmp_path / "data") as rig:
        # Temporal is not there: the server keeps serving and retries on its backoff.
        await eventually(
            lambda: rig.connection.lifecycle.snapshot().attempt >= 2, timeout=10, what="two failed attempts"
        )
        assert rig.state == "DISCONNECTED" and rig.creators.none_set
        server = temporal_dev_server_factory(port=port, wait=False)
        await server.wait_ready_async()
        answered = time.monotonic()
        observer = await asyncio.wait_for(Client.connect(address), timeout=5)

        async def ready() -> bool:
            return rig.connection.is_connected() and all(n > 0 for n in await pollers(observer, settings.queues))

        await eventually(ready, timeout=2.0, what="CONNECTED with three workers polling")
        elapsed = time.monotonic() - answered
        connected_at = next(e.at for e in rig.connection.lifecycle.events if e.dest is State.CONNECTED)
        print(
            f"connect_ok {connected_at - answered:+.2f}s after the namespace answered; events: "
            + ", ".join(f"{e.trigger}@{e.at - answered:+.2f}" for e in rig.connection.lifecycle.events)
        )
        assert rig.creators.all_set
        await rig.run_agent_execution()
    print(f"delayed start: CONNECTED + 3 workers polling {elapsed:.2f}s after the namespace answered")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
async def test_restart_is_detected_and_recovered(temporal_dev_server_factory, tmp_path, sig):
    server = temporal_dev_server_factory()
    settings = fast_settings(server.address)
    async with connection_rig(settings, tmp_path / "data") as rig:
        await eventually(rig.connection.is_connected, timeout=10, what="CONNECTED")
        first = await rig.run_agent_execution("before")
        killed = time.monotonic()
        await asyncio.to_thread(server.kill, sig)
        # One health interval plus the check's timeout, with slack for a loaded machine.
        await eventually(
            lambda: not rig.connection.is_connected(), timeout=settings.health_interval + 3, what="leaves CONNECTED"
        )
        detected = time.monotonic() - killed
        assert rig.creators.none_set
        assert rig.connection.status().workers_running == 0
        server.start()
        await server.wait_ready_async()
        await eventually(rig.connection.is_connected, timeout=10, what="CONNECTED again")
        second = await rig.run_agent_execution("after")
        assert first != second
        snap = rig.connection.lifecycle.snapshot()
        assert snap.reconnect_count >= 1 and snap.generation >= 2
    print(f"{sig.name}: left CONNECTED {detected:.2f}s after the kill")


async def test_a_failed_request_marks_the_connection_unhealthy_at_once(temporal_dev_server_factory, tmp_path):
    server = temporal_dev_server_factory()
    # Neither the health ticker nor the health probe will notice: only the request can tell.
    settings = fast_settings(server.address, health_interval=600.0, liveness=False)
    async with connection_rig(settings, tmp_path / "data") as rig:
        await eventually(rig.connection.is_connected, timeout=10, what="CONNECTED")
        creator = rig.creators.agent_execution
        assert creator is not None
        await asyncio.to_thread(server.kill)
        execution = rig.store.create_agent_execution(agent="echo", message="doomed")
        started = time.monotonic()
        with pytest.raises(TemporalUnavailableError):
            await creator.start(execution.id, timeout=3.0)
        assert time.monotonic() - started < 4.0
        rig.connection.report_unavailable(
            TemporalUnavailableError("start failed"), client=rig.connection.lifecycle.client
        )
        await eventually(
            lambda: rig.state == "UNHEALTHY" or rig.state == "RECONNECTING",
            timeout=2,
            what="UNHEALTHY right after the failed request",
        )
        events = list(rig.connection.lifecycle.events)
        assert any(e.trigger == "health_failed" and e.cause.startswith("request failed") for e in events)


async def test_black_hole_is_detected_and_recovered_without_hanging(
    temporal_dev_server_factory, tcp_proxy_factory, tmp_path
):
    server = temporal_dev_server_factory()
    proxy = tcp_proxy_factory(server.address)
    settings = fast_settings(proxy.address)
    async with connection_rig(settings, tmp_path / "data") as rig:
        await eventually(rig.connection.is_connected, timeout=10, what="CONNECTED")
        await rig.run_agent_execution("before")
        holed = time.monotonic()
        await asyncio.to_thread(proxy.blackhole)
        await eventually(
            lambda: not rig.connection.is_connected(),
            timeout=settings.health_interval + settings.health_timeout + 3,
            what="leaves CONNECTED",
        )
        detected = time.monotonic() - holed
        # Let at least one reconnect attempt run into the hole: it must end at its timeout.
        await eventually(
            lambda: any(e.trigger == "reconnect_failed" for e in rig.connection.lifecycle.events),
            timeout=10,
            what="a reconnect attempt failing in the black hole",
        )
        await asyncio.to_thread(proxy.forward)
        forwarded = time.monotonic()
        await eventually(rig.connection.is_connected, timeout=15, what="CONNECTED again")
        recovered = time.monotonic() - forwarded
        await rig.run_agent_execution("after")
        events = list(rig.connection.lifecycle.events)
        # No attempt outlived its bound: each reconnect concluded within the attempt timeout.
        bound = settings.dial_timeout + settings.verify_timeout + 1.0 + 0.5
        for begin, end in itertools.pairwise(events):
            if begin.trigger == "reconnect":
                assert end.at - begin.at <= bound, (begin, end)
    print(f"black hole: detected in {detected:.2f}s, recovered {recovered:.2f}s after forwarding resumed")


async def test_long_outage_recovers_with_fresh_workers(temporal_dev_server_factory, tmp_path):
    server = temporal_dev_server_factory()
    settings = fast_settings(server.address)
    async with connection_rig(settings, tmp_path / "data") as rig:
        await eventually(rig.connection.is_connected, timeout=10, what="CONNECTED")
        old_workers = list(rig.connection.workers)
        old_tasks = list(rig.connection.worker_tasks)
        await asyncio.to_thread(server.kill)
        down = time.monotonic()
        # An outage of more than 90 s: the backoff reaches its 30 s cap on the way.
        # (At its cap before jitter: with +/-20 % the delay drawn is 24-30 s, so next_delay == 30
        # held only when the draw was clipped -- this wait timed out in 1 run of 4.)
        lifecycle, backoff = rig.connection.lifecycle, settings.backoff

        def capped_outage() -> bool:
            attempt = lifecycle.snapshot().attempt
            return time.monotonic() - down > 91 and attempt >= 1 and backoff.base_delay(attempt) == backoff.cap

        await eventually(capped_outage, timeout=150, interval=1.0, what="a 90 s outage with the backoff at its cap")
        assert rig.state == "UNHEALTHY"
        server.start()
        await server.wait_ready_async()
        answered = time.monotonic()
        await eventually(rig.connection.is_connected, timeout=5, what="CONNECTED after the long outage")
        recovered = time.monotonic() - answered
        assert all(task.done() for task in old_tasks), "old workers still running"
        assert rig.connection.retiring == 0
        assert not {id(w) for w in old_workers} & {id(w) for w in rig.connection.workers}
        await rig.run_agent_execution("after a long outage")
    print(f"long outage: CONNECTED {recovered:.2f}s after Temporal answered (backoff was 30 s)")


async def test_a_retired_generation_leaves_no_client_behind(temporal_dev_server_factory, tmp_path):
    """Old clients (and their connections) go once their workers have stopped, not at whatever
    later garbage collection: a temporalio Client sits in a reference cycle, and a quiet server
    rarely collects (the chaos soak found one's connection open 25 s on). The collector is off
    here so that only the connection's own release can free them."""
    server = temporal_dev_server_factory()
    async with connection_rig(fast_settings(server.address), tmp_path / "data") as rig:
        await eventually(rig.connection.is_connected, timeout=10, what="CONNECTED")
        await rig.run_agent_execution("before")
        gc.collect()
        gc.disable()
        try:
            for round_ in range(2):
                await asyncio.to_thread(server.kill)
                await eventually(lambda: not rig.connection.is_connected(), timeout=10, what="the outage noticed")
                server.start()
                await server.wait_ready_async()
                await eventually(rig.connection.is_connected, timeout=10, what=f"CONNECTED again ({round_})")
                await eventually(lambda: rig.connection.retiring == 0, timeout=20, what="old workers retired")

                def clients_alive() -> int:
                    return sum(isinstance(o, Client) for o in gc.get_objects())

                # The current generation has two (the workers' and the API's).
                await eventually(lambda: clients_alive() == 2, timeout=5, what="the old clients released")
                assert rig.connection.reaper.alive == 0
        finally:
            gc.enable()
        await rig.run_agent_execution("after")


def _state_of(rig) -> State:
    return rig.connection.lifecycle.state


@pytest.mark.parametrize("target", ["DISCONNECTED", "CONNECTING", "CONNECTED", "UNHEALTHY", "RECONNECTING"])
async def test_close_in_every_state_is_bounded_and_leaves_nothing(
    temporal_dev_server_factory, tcp_proxy_factory, tmp_path, target
):
    server = temporal_dev_server_factory()
    proxy = tcp_proxy_factory(server.address)
    if target in ("DISCONNECTED", "CONNECTING"):
        # Never connected: refused (fails fast) or a black hole (the dial hangs until we stop).
        await asyncio.to_thread(proxy.refuse if target == "DISCONNECTED" else proxy.blackhole)
    settings = fast_settings(proxy.address, dial_timeout=5.0)
    before = {t for t in asyncio.all_tasks() if not t.done()}
    rig_cm = connection_rig(settings, tmp_path / "data")
    rig = await rig_cm.__aenter__()
    try:
        if target in ("CONNECTED", "UNHEALTHY", "RECONNECTING"):
            await eventually(rig.connection.is_connected, timeout=10, what="CONNECTED")
        if target == "UNHEALTHY":
            await asyncio.to_thread(proxy.refuse)
        if target == "RECONNECTING":
            await asyncio.to_thread(proxy.blackhole)
        await eventually(lambda: _state_of(rig).name == target, timeout=15, interval=0.01, what=target)
    finally:
        started = time.monotonic()
        await rig_cm.__aexit__(None, None, None)
        took = time.monotonic() - started
    assert rig.connection.lifecycle.state is State.STOPPED
    assert took < 10, f"close took {took:.1f}s"
    assert all(task.done() for task in rig.connection.worker_tasks)
    assert rig.connection.retiring == 0
    assert rig.creators.none_set
    leftover = {t for t in asyncio.all_tasks() if not t.done()} - before - {asyncio.current_task()}
    assert not leftover, leftover
    print(f"close from {target}: {took:.2f}s")


async def test_missing_namespace_is_named_with_the_fix_and_retried(temporal_dev_server_factory, tmp_path):
    server = temporal_dev_server_factory()
    namespace = f"ns-{int(time.monotonic() * 1000) % 100000}"
    settings = fast_settings(server.address, namespace=namespace)
    async with connection_rig(settings, tmp_path / "data") as rig:
        await eventually(lambda: rig.connection.lifecycle.snapshot().attempt >= 1, timeout=10, what="a failed attempt")
        error = rig.connection.lifecycle.snapshot().last_error
        assert f"namespace '{namespace}' does not exist" in error
        assert f"temporal operator namespace create -n {namespace}" in error
        admin = await asyncio.wait_for(Client.connect(server.address), timeout=5)
        await admin.workflow_service.register_namespace(
            RegisterNamespaceRequest(namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400)),
            timeout=timedelta(seconds=5),
        )
        await eventually(rig.connection.is_connected, timeout=40, what="CONNECTED once the namespace exists")
