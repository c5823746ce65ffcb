"""Benchmark 11: what the metrics cost a Create, measured with and without them on the same run.

Two servers side by side on one in-memory Temporal, both with the agent worker polling another
queue (bench/patched_server.py ``noexec``: nothing is executed, so what is timed is the Create path
alone and neither leaves the other a backlog):

- ``metrics on``: the defaults (stigmer's /metrics and the Temporal SDK's, on free ports), its
  /metrics scraped every SCRAPE_INTERVAL s while it is measured -- far more often than
  Prometheus' usual 15 s;
- ``metrics off``: ``--metrics-address none --temporal-metrics-address none`` (no interceptor,
  no subscriptions, no SDK exporter).

- sequential: one Create after the other from this process, alternating between the two servers
  create by create (on, off, off, on, ...): a burst of outside load on the shared machine then
  lands on both alike -> latency p50 / p99;
- concurrent: 50 in flight from bench/load_client.py in processes of their own, the two servers
  alternating in chunks (ABBA, twice over in a full run) -> throughput.

Goal (issue 17): metrics add at most 2 % to the create p50.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import urllib.request
from collections.abc import Sequence
from typing import Any

import grpc

from bench.happy_path import STIGMER as HAPPY_STUBS
from bench.happy_path import Chunk, merge, run_load, schedule
from bench.harness import PATCH_ENV, Context, Stigmer, StigmerApi, start_stigmer
from bench.stats import Summary, Table, fmt_ms, fmt_ratio, ratio, verdict
from stigmer.testing.temporal import TemporalDevServer

NAME = "metrics"
ON, OFF = "on", "off"
LABELS = {OFF: "metrics off (`--metrics-address none --temporal-metrics-address none`)",
          ON: "metrics on (both endpoints), scraped every 1 s"}  # fmt: skip
IN_FLIGHT = 50
SCRAPE_INTERVAL = 1.0
OFF_FLAGS = ("--metrics-address", "none", "--temporal-metrics-address", "none")
WARMUP = 20


async def run(ctx: Context) -> list[Table]:
    sequential, concurrent = (300, 400) if ctx.quick else (2000, 4000)
    chunks = 2 if ctx.quick else 4
    plan = [
        Chunk(phase=c.phase, mode=OFF if c.mode == HAPPY_STUBS else ON, count=c.count,
              in_flight=c.in_flight, interval=0.0)
        for c in schedule(sequential=0, concurrent=concurrent, in_flight=IN_FLIGHT, chunks=chunks)
        if c.phase == "concurrent"
    ]  # fmt: skip
    results: dict[tuple[str, str], dict[str, Any]] = {}
    scrapes: list[float] = []
    sizes: list[int] = []
    with contextlib.ExitStack() as stack:
        temporal = TemporalDevServer(log_path=ctx.workdir / "temporal-metrics.log")
        stack.callback(temporal.kill)
        temporal.start()
        await temporal.wait_ready_async()
        patch = ",".join(p for p in (os.environ.get(PATCH_ENV, ""), "noexec") if p)
        servers: dict[str, Stigmer] = {}
        for mode, extra in ((ON, ()), (OFF, OFF_FLAGS)):
            servers[mode] = await asyncio.to_thread(
                start_stigmer, stack, workdir=ctx.workdir, name=f"metrics-{mode}", temporal=temporal.address,
                patch=patch, extra=extra,
            )  # fmt: skip
        apis = [StigmerApi(server.address) for server in servers.values()]
        try:
            for api in apis:
                await api.wait_state("CONNECTED", timeout=30)
            url = servers[ON].server.metrics_url
            scraper = asyncio.create_task(scrape_forever(url, scrapes, sizes))
            try:
                pairs = await interleaved({mode: api for mode, api in zip(servers, apis, strict=True)}, sequential)
            finally:
                await _cancel(scraper)
            for mode, (latencies, failures) in pairs.items():
                merge(results.setdefault(("sequential", mode), {}),
                      {"elapsed": 0.0, "latencies": latencies, "failures": failures})  # fmt: skip
            ctx.say(
                f"{NAME}: sequential, {sequential} pairs: p50 on {Summary.of(pairs[ON][0]).median * 1000:.2f} ms, "
                f"off {Summary.of(pairs[OFF][0]).median * 1000:.2f} ms"
            )
            for number, chunk in enumerate(plan, 1):
                scraper = asyncio.create_task(scrape_forever(url, scrapes, sizes)) if chunk.mode == ON else None
                try:
                    result = await run_load(ctx, ["stigmer", "--address", servers[chunk.mode].address], chunk)
                finally:
                    if scraper is not None:
                        await _cancel(scraper)
                merge(results.setdefault((chunk.phase, chunk.mode), {}), result)
                p50 = Summary.of(result["latencies"]).median * 1000
                ctx.say(
                    f"{NAME}: chunk {number}/{len(plan)}: {chunk.phase} metrics {chunk.mode} x{chunk.count}: "
                    f"{chunk.count / result['elapsed']:.0f}/s, p50 {p50:.2f} ms"
                )
        finally:
            for api in apis:
                await api.close()
    return [table(results, scrapes=scrapes, sizes=sizes)]


async def interleaved(apis: dict[str, StigmerApi], count: int) -> dict[str, tuple[list[float], int]]:
    """``count`` Creates on each server, one after the other, alternating which goes first."""
    latencies: dict[str, list[float]] = {mode: [] for mode in apis}
    failures = dict.fromkeys(apis, 0)
    for mode in apis:  # untimed: channels, the first start_workflow of each
        for _ in range(WARMUP):
            await apis[mode].create("warm-up")
    for number in range(count):
        for mode in (ON, OFF) if number % 2 == 0 else (OFF, ON):
            started = time.perf_counter()
            try:
                await apis[mode].create(f"pair {number}")
            except grpc.aio.AioRpcError:
                failures[mode] += 1
                continue
            latencies[mode].append(time.perf_counter() - started)
    return {mode: (latencies[mode], failures[mode]) for mode in apis}


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def scrape_forever(url: str, durations: list[float], sizes: list[int]) -> None:
    """GET ``url`` every SCRAPE_INTERVAL s (each with a timeout) until cancelled."""
    while True:
        started = time.perf_counter()
        body = await asyncio.to_thread(_get, url)
        durations.append(time.perf_counter() - started)
        sizes.append(len(body))
        await asyncio.sleep(SCRAPE_INTERVAL)


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as reply:
        body: bytes = reply.read()
    return body


def table(results: dict[tuple[str, str], dict[str, Any]], *, scrapes: list[float], sizes: list[int]) -> Table:
    rows: list[Sequence[str]] = []
    figures: dict[str, tuple[float, float]] = {}
    for mode in (OFF, ON):
        seq, conc = results[("sequential", mode)], results[("concurrent", mode)]
        latency = Summary.of(seq["latencies"])
        throughput = len(conc["latencies"]) / float(conc["elapsed"])
        figures[mode] = (latency.median, throughput)
        failures = int(seq["failures"]) + int(conc["failures"])
        rows.append([LABELS[mode], fmt_ms(latency.median), fmt_ms(latency.p99), f"{throughput:.0f}/s", str(failures)])
    extra = ratio(figures[ON][0], figures[OFF][0]) - 1.0
    kept = ratio(figures[ON][1], figures[OFF][1])
    rows.append(["on vs off", f"{extra * 100:+.1f} % (goal <= +2 %: {verdict(extra <= 0.02)})", "",
                 f"{fmt_ratio(kept)}", ""])  # fmt: skip
    result = Table(
        title="Benchmark 11: what the metrics cost a Create (nothing executed)",
        headers=["contender", "sequential p50 (interleaved)", "p99", f"concurrent ({IN_FLIGHT} in flight)", "failures"],
        rows=rows,
    )
    scrape = Summary.of(scrapes)
    result.notes.append(
        f"{len(scrapes)} scrapes of stigmer's /metrics while 'on' was measured: p50 {fmt_ms(scrape.median)}, "
        f"max {fmt_ms(scrape.high)}, {max(sizes, default=0) / 1024:.1f} KiB each at most."
    )
    return result
