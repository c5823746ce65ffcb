"""Benchmark 2: how long until the server knows Temporal is gone (state UNHEALTHY).

Two servers with default settings (health check every 15 s) watch the same Temporal at once: one
gets no traffic, the other a create every second (from a Python grpc client). Two faults:

- ``SIGKILL``: the dev server process dies (persistent db; restarted afterwards). The servers
  dial it directly, so a dead Temporal refuses connections as it would in production.
- ``black hole``: the servers dial through a TcpProxy that is switched to swallow everything
  (connects succeed, nothing ever answers), then back to forwarding.

Detection = wall time of the server's own CONNECTED -> UNHEALTHY transition (GetStatus
recent_transitions, polled every 50 ms) minus the wall time of the fault. Each fault comes a
random 0.5-12 s after the servers are connected again, so that faults land at random points of
the 15 s health tick rather than at a fixed distance from the previous detection.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time

import grpc

from bench.harness import Context, Stigmer, StigmerApi, start_stigmer, transitions_after, wait_answering, wall
from bench.stats import Summary, Table, fmt_seconds, verdict
from tests.support.tcp_proxy import TcpProxy

NAME = "detection"
HEALTH_INTERVAL = 15.0
#: Longest we wait for a detection: one tick, its check's timeout, and slack.
DETECT_BUDGET = HEALTH_INTERVAL + 15.0

QUIET, BUSY = "no traffic", "a create per second"


async def one_create_per_second(api: StigmerApi, stop: asyncio.Event) -> None:
    """The traffic: a create every second (each bounded by 10 s), until stopped."""
    while not stop.is_set():
        started = time.monotonic()
        with contextlib.suppress(grpc.aio.AioRpcError):
            await api.create("traffic", timeout=10.0)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=max(0.0, 1.0 - (time.monotonic() - started)))


async def detected_at(api: StigmerApi, *, since: float, budget: float) -> float | None:
    """Wall time of the first CONNECTED -> UNHEALTHY transition at or after ``since``."""
    end = time.monotonic() + budget
    while time.monotonic() < end:
        with contextlib.suppress(grpc.aio.AioRpcError):
            status = await api.status()
            for t in transitions_after(status, since):
                if t.source == "CONNECTED" and t.dest == "UNHEALTHY":
                    return wall(t.at)
        await asyncio.sleep(0.05)
    return None


async def run(ctx: Context) -> list[Table]:
    reps = ctx.repetitions(full=10, quick=2)
    results: dict[tuple[str, str], list[float | None]] = {}
    with contextlib.ExitStack() as stack:
        proxy = TcpProxy(target=ctx.temporal.address)
        stack.callback(proxy.close)
        proxy.start()
        for fault, target in (("SIGKILL", ctx.temporal.address), ("black hole", proxy.address)):
            ctx.say(f"{NAME}: {fault}, {reps} repetitions, two servers (health interval {HEALTH_INTERVAL:g} s)")
            servers: dict[str, Stigmer] = {}
            for kind, suffix in ((QUIET, "quiet"), (BUSY, "busy")):
                name = f"detect-{fault.split()[0].lower()}-{suffix}"
                servers[kind] = await asyncio.to_thread(
                    start_stigmer, stack, workdir=ctx.workdir, name=name, temporal=target,
                    health_interval=HEALTH_INTERVAL,
                )  # fmt: skip
            try:
                await measure(ctx, fault=fault, proxy=proxy, servers=servers, reps=reps, results=results)
            finally:
                for server in servers.values():
                    await asyncio.to_thread(server.server.kill)
    return tables(results)


async def measure(
    ctx: Context,
    *,
    fault: str,
    proxy: TcpProxy,
    servers: dict[str, Stigmer],
    reps: int,
    results: dict[tuple[str, str], list[float | None]],
) -> None:
    rng = random.Random(2)
    apis = {kind: StigmerApi(server.address) for kind, server in servers.items()}
    stop = asyncio.Event()
    traffic = asyncio.create_task(one_create_per_second(apis[BUSY], stop))
    try:
        for rep in range(reps):
            for api in apis.values():
                await api.wait_state("CONNECTED", timeout=60)
            # Land anywhere in the health tick. Waiting a fixed time after the last detection
            # (which happened on a tick) would lock every fault to the same phase of the tick.
            await asyncio.sleep(rng.uniform(0.5, HEALTH_INTERVAL - 3.0))
            at = await inject(fault, ctx, proxy)
            found = await asyncio.gather(*(detected_at(a, since=at, budget=DETECT_BUDGET) for a in apis.values()))
            took = [None if when is None else when - at for when in found]
            for kind, value in zip(apis, took, strict=True):
                results.setdefault((fault, kind), []).append(value)
            shown = ", ".join(f"{k} {'never' if v is None else f'{v:.2f}s'}" for k, v in zip(apis, took, strict=True))
            ctx.say(f"{NAME}: {fault} {rep + 1}/{reps}: {shown}")
            await heal(fault, ctx, proxy)
    finally:
        stop.set()
        await asyncio.wait_for(traffic, timeout=15)
        for api in apis.values():
            await api.close()


async def inject(fault: str, ctx: Context, proxy: TcpProxy) -> float:
    """Cause the fault; return the wall time it took effect."""
    if fault == "SIGKILL":
        at = time.time()  # the signal is delivered at once; kill() then waits for the exit
        await asyncio.to_thread(ctx.temporal.kill, signal.SIGKILL)
        return at
    await asyncio.to_thread(proxy.blackhole)  # returns once the mode is in effect
    return time.time()


async def heal(fault: str, ctx: Context, proxy: TcpProxy) -> None:
    if fault == "SIGKILL":
        ctx.temporal.start()
        await wait_answering(ctx.temporal.address, timeout=30)
    else:
        await asyncio.to_thread(proxy.forward)


def tables(results: dict[tuple[str, str], list[float | None]]) -> list[Table]:
    table = Table(
        f"2. Detection: fault -> state UNHEALTHY (health interval {HEALTH_INTERVAL:g} s, the default)",
        ["fault", "traffic", "p50", "p95", "worst", "n (missed)", "target", "verdict"],
    )
    for (fault, kind), values in results.items():
        s = Summary.of(values)
        # Issue 12: no traffic, <= 3 s for a kill and <= 5 s for a black hole; with traffic <= 3 s
        # (issue 19). The health probe answers for both, not the 15 s tick.
        limit = (3.0 if fault == "SIGKILL" else 5.0) if kind == QUIET else 3.0
        ok = None if s.n == 0 else (s.high <= limit and s.missing == 0)
        table.add(fault, kind, fmt_seconds(s.median), fmt_seconds(s.p95), fmt_seconds(s.high),
                  f"{s.n} ({s.missing})", f"<= {limit:g} s", verdict(ok))  # fmt: skip
    table.notes.append("verdict judges the worst case against the target (every repetition must meet it).")
    return [table]
