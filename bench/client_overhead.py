"""Benchmark 8: what stigmer.client costs over the raw generated stubs, on the same server, same run.

One server (its agent worker polls another queue, bench/patched_server.py ``noexec``: nothing is
executed, so what is timed is the Create path alone and the two contenders cannot leave each
other a backlog) and its own in-memory Temporal. Load from bench/load_client.py in separate
processes, ``stigmer`` (AgentExecutionServiceStub.Create on a grpc.aio channel) and ``client``
(AsyncClient.create_agent_execution), alternating in chunks (ABBA, twice over in a full run):

- sequential: one Create after the other -> latency p50 / p99;
- concurrent: 50 in flight -> throughput.

Goals (issue 13): throughput within 5 % of the stubs', p50 at most 0.3 ms more.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence

from bench.happy_path import STIGMER as HAPPY_STUBS
from bench.happy_path import Chunk, merge, run_load, schedule
from bench.harness import PATCH_ENV, Context, StigmerApi, start_stigmer
from bench.stats import Summary, Table, fmt_ms, fmt_ratio, ratio, verdict
from stigmer.testing.temporal import TemporalDevServer

NAME = "client"
STUBS, CLIENT = "stigmer", "client"
LABELS = {STUBS: "raw stubs (grpc.aio)", CLIENT: "stigmer.client.AsyncClient"}
IN_FLIGHT = 50


async def run(ctx: Context) -> list[Table]:
    sequential, concurrent = (200, 400) if ctx.quick else (1000, 4000)
    chunks = 2 if ctx.quick else 4
    plan = [
        Chunk(phase=c.phase, mode=STUBS if c.mode == HAPPY_STUBS else CLIENT, count=c.count,
              in_flight=c.in_flight, interval=0.0)
        for c in schedule(sequential=sequential, concurrent=concurrent, in_flight=IN_FLIGHT, chunks=chunks)
    ]  # fmt: skip
    results: dict[tuple[str, str], dict[str, object]] = {}
    with contextlib.ExitStack() as stack:
        temporal = TemporalDevServer(log_path=ctx.workdir / "temporal-client.log")
        stack.callback(temporal.kill)
        temporal.start()
        await temporal.wait_ready_async()
        patch = ",".join(p for p in (os.environ.get(PATCH_ENV, ""), "noexec") if p)
        server = await asyncio.to_thread(
            start_stigmer, stack, workdir=ctx.workdir, name="client", temporal=temporal.address, patch=patch
        )
        api = StigmerApi(server.address)
        try:
            await api.wait_state("CONNECTED", timeout=30)
            for number, chunk in enumerate(plan, 1):
                result = await run_load(ctx, [chunk.mode, "--address", server.address], chunk)
                merge(results.setdefault((chunk.phase, chunk.mode), {}), result)
                p50 = Summary.of(result["latencies"]).median * 1000
                ctx.say(
                    f"{NAME}: chunk {number}/{len(plan)}: {chunk.phase} {LABELS[chunk.mode]} x{chunk.count}: "
                    f"{chunk.count / result['elapsed']:.0f}/s, p50 {p50:.2f} ms"
                )
        finally:
            await api.close()
    return [table(results)]


def table(results: dict[tuple[str, str], dict[str, object]]) -> Table:
    rows: list[Sequence[str]] = []
    figures: dict[str, tuple[float, float]] = {}
    for mode in (STUBS, CLIENT):
        seq, conc = results[("sequential", mode)], results[("concurrent", mode)]
        latency = Summary.of(seq["latencies"])  # type: ignore[arg-type]
        done = len(conc["latencies"])  # type: ignore[arg-type]
        throughput = done / float(conc["elapsed"])  # type: ignore[arg-type]
        figures[mode] = (latency.median, throughput)
        failures = int(seq["failures"]) + int(conc["failures"])  # type: ignore[call-overload]
        rows.append([LABELS[mode], fmt_ms(latency.median), fmt_ms(latency.p99), f"{throughput:.0f}/s", str(failures)])
    extra_ms = (figures[CLIENT][0] - figures[STUBS][0]) * 1000
    kept = ratio(figures[CLIENT][1], figures[STUBS][1])
    rows.append(["client vs stubs", f"{extra_ms:+.2f} ms (goal <= +0.30: {verdict(extra_ms <= 0.3)})", "",
                 f"{fmt_ratio(kept)} (goal >= 0.95x: {verdict(kept >= 0.95)})", ""])  # fmt: skip
    return Table(
        title="Benchmark 8: stigmer.client's overhead over the raw stubs (Create, nothing executed)",
        headers=["contender", "sequential p50", "p99", "concurrent (50 in flight)", "failures"],
        rows=rows,
    )
