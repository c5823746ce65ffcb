"""Benchmark 3: the happy path's overhead, stigmer-py's gRPC API vs raw ``client.start_workflow``.

A dev server of its own, in memory: with the persistent one shared by the other benchmarks,
Temporal's SQLite file is the bottleneck while workflows execute (start latency ~58 ms vs ~8 ms
idle, measured), which would hide stigmer's own overhead. The load comes from
bench/load_client.py in a separate process (client costs are paid outside the server):

- sequential: 500 operations one after the other, paced at one start per 40 ms at most
  (25/s: below what the workers execute, ~30/s here, so that the executions keep pace in the
  background for both contenders; unpaced, raw starts outrun the workers and their executions
  pile up for later, while a Create shares its process with them) -> latency p50 / p99;
- concurrent: 2000 operations, 50 in flight -> throughput (operations per second).

``stigmer`` = AgentExecutionService.Create; ``raw`` = start_workflow of the same workflow type,
input, options and task queue (its records are written to the server's store beforehand, so the
server's workers execute both kinds alike).

Two configurations, in this order:

- ``executes its workflows``: a server with default settings; it executes every workflow it (or
  raw) started, in the same process as its API. Every earlier execution has finished (drained)
  before a chunk starts, so no chunk inherits another's backlog.
- ``control: executes nothing``: the same server except that its agent execution worker polls
  another queue (bench/patched_server.py ``noexec``), so nothing is executed: what is left is the
  API path itself (gRPC, controller, SQLite, start_workflow) against the bare start_workflow.

Contenders alternate in chunks (2 x 250 sequential and 2 x 1000 concurrent each, ABBA order),
each chunk a fresh client process that first makes 10 untimed operations: on a shared 2-core
machine a burst of outside load then does not land on one contender only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

from bench.harness import PATCH_ENV, ROOT, Context, Stigmer, StigmerApi, start_stigmer
from bench.stats import Summary, Table, fmt_ms, fmt_ratio, ratio, verdict
from stigmer.testing.temporal import TemporalDevServer

NAME = "happy"
STIGMER, RAW = "stigmer-py gRPC Create", "raw client.start_workflow"
EXECUTING, CONTROL = "executes its workflows", "control: executes nothing"
IN_FLIGHT = 50
PACE = 0.04  # seconds between sequential starts

Results = dict[tuple[str, str, str], dict[str, Any]]  # (configuration, phase, mode) -> merged chunks


@dataclass(frozen=True)
class Chunk:
    phase: str
    mode: str
    count: int
    in_flight: int
    interval: float = 0.0


def schedule(*, sequential: int, concurrent: int, in_flight: int, chunks: int) -> list[Chunk]:
    """``chunks`` per contender and phase, ABBA: S R R S ... sequential, R S S R ... concurrent."""
    plan: list[Chunk] = []
    phases = (("sequential", sequential, 1, STIGMER, PACE), ("concurrent", concurrent, in_flight, RAW, 0.0))
    for phase, total, lanes, first, interval in phases:
        second = RAW if first == STIGMER else STIGMER
        for index in range(2 * chunks):
            mode = (first, second, second, first)[index % 4]
            plan.append(Chunk(phase=phase, mode=mode, count=total // chunks, in_flight=lanes, interval=interval))
    return plan


async def run(ctx: Context) -> list[Table]:
    sequential, concurrent = (100, 400) if ctx.quick else (500, 2000)
    plan = schedule(sequential=sequential, concurrent=concurrent, in_flight=IN_FLIGHT, chunks=2)
    results: Results = {}
    drained = 0.0
    base_patch = os.environ.get(PATCH_ENV, "")
    with contextlib.ExitStack() as stack:
        temporal = TemporalDevServer(log_path=ctx.workdir / "temporal-happy.log")
        stack.callback(temporal.kill)
        temporal.start()
        await temporal.wait_ready_async()
        configurations = ((EXECUTING, "happy", base_patch),
                          (CONTROL, "happy-control", ",".join(p for p in (base_patch, "noexec") if p)))  # fmt: skip
        for config, name, patch in configurations:
            server = await asyncio.to_thread(
                start_stigmer, stack, workdir=ctx.workdir, name=name, temporal=temporal.address, patch=patch
            )
            api = StigmerApi(server.address)
            try:
                await api.wait_state("CONNECTED", timeout=30)
                for number, chunk in enumerate(plan, 1):
                    if config == EXECUTING:
                        drained += await api.drain(timeout=600)
                    result = await load(ctx, server, temporal, chunk)
                    merge(results.setdefault((config, chunk.phase, chunk.mode), {}), result)
                    ctx.say(
                        f"{NAME}: {config}, chunk {number}/{len(plan)}: {chunk.phase} {chunk.mode} x{chunk.count}, "
                        f"{chunk.in_flight} in flight: {chunk.count / result['elapsed']:.0f}/s, p50 "
                        f"{Summary.of(result['latencies']).median * 1000:.2f} ms, failures {result['failures']}"
                    )
            finally:
                await api.close()
                await asyncio.to_thread(server.server.kill)
    return tables(results, drained=drained, sequential=sequential, concurrent=concurrent)


def merge(into: dict[str, Any], result: dict[str, Any]) -> None:
    into["elapsed"] = into.get("elapsed", 0.0) + result["elapsed"]
    into["latencies"] = into.get("latencies", []) + result["latencies"]
    into["failures"] = into.get("failures", 0) + result["failures"]


async def load(ctx: Context, server: Stigmer, temporal: TemporalDevServer, chunk: Chunk) -> dict[str, Any]:
    if chunk.mode == STIGMER:
        target = ["stigmer", "--address", server.address]
    else:
        target = ["raw", "--temporal", temporal.address, "--data-dir", str(server.server.data_dir),
                  "--queue", server.queues.agent_execution]  # fmt: skip
    return await run_load(ctx, target, chunk)


async def run_load(ctx: Context, target: list[str], chunk: Chunk) -> dict[str, Any]:
    """One chunk of bench/load_client.py (``target``: its mode and arguments) in a process of its own."""
    log = ctx.workdir / "load-client.log"
    with log.open("ab") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.load_client", *target, "--count", str(chunk.count),
            "--in-flight", str(chunk.in_flight), "--interval", str(chunk.interval),
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=err, start_new_session=True,
        )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=600)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"load client ({chunk.mode}) exited {proc.returncode}; see {log}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def tables(results: Results, *, drained: float, sequential: int, concurrent: int) -> list[Table]:
    table = Table(
        "3. Happy path: stigmer-py's gRPC API vs raw start_workflow (separate client process)",
        ["configuration", "operation", f"sequential p50 (n={sequential}, <= 25/s)", "p99",
         f"throughput ({concurrent}, {IN_FLIGHT} in flight)", "p50 under load", "p99 under load", "failures"],
    )  # fmt: skip
    summary: dict[tuple[str, str], tuple[Summary, float]] = {}
    for config in (EXECUTING, CONTROL):
        for mode in (STIGMER, RAW):
            seq, conc = results.get((config, "sequential", mode)), results.get((config, "concurrent", mode))
            if not seq and not conc:
                continue
            s = Summary.of(seq["latencies"] if seq else [])
            c = Summary.of(conc["latencies"] if conc else [])
            rate = len(conc["latencies"]) / conc["elapsed"] if conc else float("nan")
            summary[(config, mode)] = (s, rate)
            failures = sum(r["failures"] for r in (seq, conc) if r)
            table.add(config, mode, fmt_ms(s.median), fmt_ms(s.p99), f"{rate:.0f}/s", fmt_ms(c.median), fmt_ms(c.p99),
                      failures)  # fmt: skip
    targets = Table("3. Happy path targets (the server executing its workflows; the control in brackets)",
                    ["target", "measured", "verdict"])  # fmt: skip
    overhead = {config: _overhead(summary, config) for config in (EXECUTING, CONTROL)}
    share = {config: _share(summary, config) for config in (EXECUTING, CONTROL)}
    targets.add("p50 latency overhead <= 3 ms", f"{fmt_ms(overhead[EXECUTING])} ({fmt_ms(overhead[CONTROL])})",
                verdict(None if math.isnan(overhead[EXECUTING]) else overhead[EXECUTING] <= 0.003))  # fmt: skip
    targets.add("throughput >= 0.8x raw start_workflow", f"{fmt_ratio(share[EXECUTING])} ({fmt_ratio(share[CONTROL])})",
                verdict(None if math.isnan(share[EXECUTING]) else share[EXECUTING] >= 0.8))  # fmt: skip
    table.notes.append(f"{EXECUTING}: the server's workers ran the executions to COMPLETED (draining between "
                       f"chunks took {drained:.0f} s in all); {CONTROL}: executions stayed PENDING.")  # fmt: skip
    table.notes.append("the client process runs on the same 2 cores as the server, its workers and Temporal.")
    return [table, targets]


def _overhead(summary: dict[tuple[str, str], tuple[Summary, float]], config: str) -> float:
    if (config, STIGMER) not in summary or (config, RAW) not in summary:
        return float("nan")
    return summary[(config, STIGMER)][0].median - summary[(config, RAW)][0].median


def _share(summary: dict[tuple[str, str], tuple[Summary, float]], config: str) -> float:
    if (config, STIGMER) not in summary or (config, RAW) not in summary:
        return float("nan")
    return ratio(summary[(config, STIGMER)][1], summary[(config, RAW)][1])
