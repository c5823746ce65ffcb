"""Benchmark 9: how long a Cancel takes to stop a running agent, and what a retried create costs.

One real server (the product's defaults: the echo agent heartbeats every 0.5 s, the agent worker
throttles heartbeats to 1 s) on its own queues of the shared Temporal. Each sample creates an agent
execution that would run 5 minutes, waits until it is IN_PROGRESS, then waits a random 0-1.5 s
(so the cancel lands anywhere in the heartbeat cycle), calls Cancel and times:

- ``cancel RPC``: the Cancel call's own latency;
- ``stopped``: from the Cancel call to the record's CANCELLED (the workflow records it only after
  the agent's activity has stopped: WAIT_CANCELLATION_COMPLETED).

A second table: Create with a request_id, then the same request again (the retry a client makes
after a lost reply) -- the retry's latency next to the first create's, side by side in one run.

Goal (issue 14): the agent stops within 2 s of the Cancel (every sample, p100).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid

import grpc

from bench.harness import Context, start_stigmer
from bench.stats import Summary, Table, fmt_ms
from stigmer.api import agent_execution_pb2, agent_execution_pb2_grpc, common_pb2
from stigmer.temporal.agents import DELAY_ENV

NAME = "cancel"
GOAL_S = 2.0
CALL = 10.0


async def run(ctx: Context) -> list[Table]:
    samples = ctx.repetitions(full=30, quick=8)
    retries = ctx.repetitions(full=300, quick=60)
    rng = random.Random(9)
    with contextlib.ExitStack() as stack:
        server = await asyncio.to_thread(
            start_stigmer, stack, workdir=ctx.workdir, name="cancel", temporal=ctx.temporal.address
        )
        channel = grpc.aio.insecure_channel(server.address)
        stub = agent_execution_pb2_grpc.AgentExecutionServiceStub(channel)
        try:
            await _connected(stub)
            rpc, stopped = [], []
            for number in range(1, samples + 1):
                took_rpc, took_stop = await _one_cancel(stub, delay=rng.uniform(0.0, 1.5))
                rpc.append(took_rpc)
                stopped.append(took_stop)
                ctx.say(
                    f"{NAME}: {number}/{samples}: cancel RPC {took_rpc * 1000:.1f} ms, stopped after {took_stop:.2f} s"
                )
            first, again = await _retried_creates(stub, retries)
        finally:
            await channel.close()
    return [_cancel_table(rpc, stopped), _retry_table(first, again)]


async def _connected(stub: agent_execution_pb2_grpc.AgentExecutionServiceStub) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            await stub.Create(agent_execution_pb2.CreateAgentExecutionRequest(agent="echo", message="up"), timeout=CALL)
            return
        except grpc.aio.AioRpcError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _one_cancel(stub: agent_execution_pb2_grpc.AgentExecutionServiceStub, *, delay: float) -> tuple[float, float]:
    created = await stub.Create(
        agent_execution_pb2.CreateAgentExecutionRequest(agent="echo", message="long", runtime_env={DELAY_ENV: "300"}),
        timeout=CALL,
    )
    watch = stub.Watch(agent_execution_pb2.WatchAgentExecutionRequest(id=created.id), timeout=120)
    async for record in watch:
        if record.phase == common_pb2.IN_PROGRESS:
            break
    await asyncio.sleep(delay)  # where in the heartbeat cycle the cancel lands (a benchmark, not a test)
    asked = time.monotonic()
    await stub.Cancel(
        agent_execution_pb2.CancelAgentExecutionRequest(id=created.id, requested_by="bench"), timeout=CALL
    )
    rpc = time.monotonic() - asked
    async for record in watch:
        if record.phase == common_pb2.CANCELLED:
            return rpc, time.monotonic() - asked
    raise RuntimeError(f"{created.id} ended without CANCELLED")


async def _retried_creates(
    stub: agent_execution_pb2_grpc.AgentExecutionServiceStub, count: int
) -> tuple[list[float], list[float]]:
    first: list[float] = []
    again: list[float] = []
    for _ in range(count):
        request = agent_execution_pb2.CreateAgentExecutionRequest(
            agent="echo", message="once", request_id=str(uuid.uuid4())
        )
        for bucket in (first, again):
            started = time.perf_counter()
            reply = await stub.Create(request, timeout=CALL)
            bucket.append(time.perf_counter() - started)
        assert reply.request_id == request.request_id
    return first, again


def _cancel_table(rpc: list[float], stopped: list[float]) -> Table:
    table = Table(
        title="Benchmark 9a: Cancel of a running agent (heartbeat 0.5 s, throttle 1 s)",
        headers=["measure", "p50", "p95", "max", "samples"],
    )
    for label, values, fmt in (
        ("cancel RPC", rpc, fmt_ms),
        ("Cancel -> CANCELLED (agent stopped)", stopped, lambda s: f"{s:.2f} s"),
    ):
        summary = Summary.of(values)
        table.add(label, fmt(summary.median), fmt(summary.p95), fmt(max(values)), len(values))
    worst = max(stopped)
    met = "met" if worst <= GOAL_S else "MISSED"
    table.notes.append(f"goal: every agent stopped within {GOAL_S:g} s of its Cancel -> worst {worst:.2f} s ({met})")
    return table


def _retry_table(first: list[float], again: list[float]) -> Table:
    table = Table(
        title="Benchmark 9b: Create with a request_id, then the same request again (one server, same run)",
        headers=["call", "p50", "p99", "samples"],
    )
    for label, values in (
        ("first create (stores, starts the workflow)", first),
        ("retry (finds it, no new workflow)", again),
    ):
        summary = Summary.of(values)
        table.add(label, fmt_ms(summary.median), fmt_ms(summary.p99), len(values))
    return table
