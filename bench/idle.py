"""Benchmark 4: what an idle server costs, with Temporal up and with Temporal down (retrying).

Two servers with default settings run side by side in the same window: one dials the dev server
directly (connected, three workers long-polling), the other dials it through a TcpProxy that is
switched to refuse connections (so it sits UNHEALTHY, retrying with backoff and probing the port
every 0.25 s, as with a Temporal that is down). The plain-SDK contender (one client, one worker)
runs next to them as a reference. Each is used once (a create that completes) before the window,
so the figures are for a warmed-up process, not a fresh one.

CPU is (user + system time) over the window from /proc/PID/stat, in % of one core; RSS is
resident memory from /proc/PID/statm sampled every second (MB = 10^6 bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from bench.harness import Context, StigmerApi, start_stigmer
from bench.plain_sdk import PlainApp
from bench.procs import ProcSample, Usage, sample, usage
from bench.stats import Table, verdict
from tests.support.tcp_proxy import TcpProxy

NAME = "idle"
RSS_TARGET_MB = 150.0
CPU_TARGET_PERCENT = 1.0


async def run(ctx: Context) -> list[Table]:
    window = 15.0 if ctx.quick else 60.0
    temporal = ctx.temporal
    with contextlib.ExitStack() as stack:
        proxy = TcpProxy(target=temporal.address)
        stack.callback(proxy.close)
        proxy.start()
        up = await asyncio.to_thread(
            start_stigmer, stack, workdir=ctx.workdir, name="idle-up", temporal=temporal.address
        )
        down = await asyncio.to_thread(
            start_stigmer, stack, workdir=ctx.workdir, name="idle-down", temporal=proxy.address
        )
        plain = PlainApp(address=temporal.address, queue="bench-plain-idle", log=ctx.workdir / "plain-idle.log")
        stack.callback(plain.kill)
        await plain.start()
        apis = [StigmerApi(up.address), StigmerApi(down.address)]
        try:
            for api in apis:
                await api.wait_state("CONNECTED", timeout=30)
                assert await api.wait_completed(await api.create("warm-up"), timeout=20) is not None
            plain.go(0, deadline=20)
            await plain.read(timeout=25)
            await asyncio.to_thread(proxy.refuse)
            await apis[1].wait_state("UNHEALTHY", "RECONNECTING", timeout=40)
            await asyncio.sleep(5.0)  # let the teardown of the old workers finish
            ctx.say(f"{NAME}: sampling for {window:g} s")
            pids = {"stigmer-py, Temporal up": up.pid, "stigmer-py, Temporal down": down.pid,
                    "plain SDK app, Temporal up (reference)": plain.pid}  # fmt: skip
            figures = await watch(pids, window=window)
            state = (await apis[1].status()).state
        finally:
            for api in apis:
                await api.close()
    return tables(figures, window=window, down_state=state)


async def watch(pids: dict[str, int], *, window: float) -> dict[str, Usage]:
    samples: dict[str, list[ProcSample]] = {name: [] for name in pids}
    end = time.monotonic() + window
    while True:
        now = time.monotonic()
        for name, pid in pids.items():
            samples[name].append(sample(pid, at=now))
        if now >= end:
            break
        await asyncio.sleep(min(1.0, max(0.0, end - now)))
    return {name: usage(values) for name, values in samples.items()}


def tables(figures: dict[str, Usage], *, window: float, down_state: str) -> list[Table]:
    table = Table(
        f"4. Idle cost over {window:g} s (after one create each)",
        ["process", "CPU (% of one core)", "RSS mean", "RSS max", f"target (< {CPU_TARGET_PERCENT:g} %, <= "
         f"{RSS_TARGET_MB:g} MB)"],
    )  # fmt: skip
    for name, use in figures.items():
        rss_mean, rss_max = use.rss_mean_mib * 2**20 / 1e6, use.rss_max_mib * 2**20 / 1e6
        ok = use.cpu_percent < CPU_TARGET_PERCENT and rss_max <= RSS_TARGET_MB
        table.add(name, f"{use.cpu_percent:.2f} %", f"{rss_mean:.0f} MB", f"{rss_max:.0f} MB",
                  verdict(ok) if name.startswith("stigmer") else "-")  # fmt: skip
    table.notes.append(f"the 'down' server was {down_state} at the end of the window (Temporal refused by a proxy).")
    return [table]
