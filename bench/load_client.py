"""Load for benchmark 3, run as its own process: creates through stigmer's gRPC API, or raw starts.

    python3 -m bench.load_client stigmer --address A --count 500 --in-flight 1 --interval 0.04
    python3 -m bench.load_client client --address A --count 500 --in-flight 1   # through stigmer.client
    python3 -m bench.load_client raw --temporal T --data-dir D --queue Q --count 2000 --in-flight 50

Both modes do the same thing from Temporal's and the workers' point of view: one agent execution
workflow per operation, on the server's agent queue, executed to COMPLETED by the server's
workers. ``stigmer`` calls AgentExecutionService.Create (the server stores the record, starts the
workflow, reads the record back). ``raw`` writes the records into the server's store up front
(untimed), then times only ``client.start_workflow`` with exactly the arguments stigmer's creator
uses. Each run warms up with a few untimed operations first. Prints one JSON line: per-operation
latencies (seconds), the timed phase's wall time and the number of failures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

WARMUP = 10

Operation = Callable[[int], Awaitable[None]]


async def timed(operation: Operation, *, count: int, in_flight: int, interval: float = 0.0) -> dict[str, object]:
    """Run ``count`` operations over ``in_flight`` lanes; operation i starts no earlier than
    ``i * interval`` after the first (0: as fast as the lanes allow)."""
    latencies: list[float] = []
    failures: list[str] = []
    next_index = 0
    begin = time.perf_counter()

    async def lane() -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            await asyncio.sleep(max(0.0, begin + index * interval - time.perf_counter()))
            started = time.perf_counter()
            try:
                await operation(index)
            except Exception as err:  # counted and reported, never retried: a failure is a result
                failures.append(f"{type(err).__name__}: {err}"[:200])
                continue
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(in_flight)))
    return {"elapsed": time.perf_counter() - started, "latencies": latencies, "failures": len(failures),
            "first_failure": failures[0] if failures else ""}  # fmt: skip


async def stigmer_operation(address: str) -> tuple[Operation, Callable[[], Awaitable[None]]]:
    import grpc

    from stigmer.api import agent_execution_pb2, agent_execution_pb2_grpc

    channel = grpc.aio.insecure_channel(address)
    stub = agent_execution_pb2_grpc.AgentExecutionServiceStub(channel)

    async def create(index: int) -> None:
        request = agent_execution_pb2.CreateAgentExecutionRequest(agent="echo", message=f"load {index}")
        await stub.Create(request, timeout=30.0)

    return create, channel.close


async def client_operation(address: str) -> tuple[Operation, Callable[[], Awaitable[None]]]:
    """The same Create through stigmer.client.AsyncClient (typed views, error mapping and all)."""
    from stigmer.client import AsyncClient

    client = AsyncClient(address=address, timeout=30.0)

    async def create(index: int) -> None:
        await client.create_agent_execution(agent="echo", message=f"load {index}")

    return create, client.close


async def raw_operation(
    temporal: str, data_dir: Path, queue: str, total: int
) -> tuple[Operation, Callable[[], Awaitable[None]]]:
    from temporalio.client import Client
    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

    from stigmer.store import Store
    from stigmer.temporal import names
    from stigmer.temporal.payloads import AgentExecutionInput
    from stigmer.temporal.workflows import AGENT_EXECUTION_RUN_TIMEOUT

    store = Store.open(data_dir)  # the server's own database: WAL lets two processes share it
    try:
        ids = [store.create_agent_execution(agent="echo", message=f"load {i}", runtime_env={}).id for i in range(total)]
    finally:
        store.close()
    client = await Client.connect(temporal)

    async def start(index: int) -> None:
        execution_id = ids[index]
        await client.start_workflow(
            names.AGENT_EXECUTION_WORKFLOW,
            AgentExecutionInput(execution_id=execution_id),
            id=names.agent_execution_workflow_id(execution_id),
            task_queue=queue,
            run_timeout=AGENT_EXECUTION_RUN_TIMEOUT,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            rpc_timeout=timedelta(seconds=10),
        )

    async def nothing() -> None:
        return None

    return start, nothing


async def main(args: argparse.Namespace) -> None:
    if args.mode == "stigmer":
        operation, close = await stigmer_operation(args.address)
    elif args.mode == "client":
        operation, close = await client_operation(args.address)
    else:
        operation, close = await raw_operation(args.temporal, args.data_dir, args.queue, WARMUP + args.count)
    try:
        await timed(operation, count=WARMUP, in_flight=1)

        async def shifted(index: int) -> None:  # raw ids past the warm-up ones
            await operation(WARMUP + index)

        result = await timed(shifted, count=args.count, in_flight=args.in_flight, interval=args.interval)
    finally:
        await close()
    sys.stdout.write(json.dumps(result) + "\n")


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["stigmer", "client", "raw"])
    parser.add_argument("--address", help="stigmer server (mode stigmer)")
    parser.add_argument("--temporal", help="Temporal frontend (mode raw)")
    parser.add_argument("--data-dir", type=Path, help="the server's data dir (mode raw)")
    parser.add_argument("--queue", help="the server's agent execution queue (mode raw)")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--in-flight", type=int, default=1)
    parser.add_argument("--interval", type=float, default=0.0, help="pace: seconds between operation starts")
    args = parser.parse_args(argv)
    if args.mode in ("stigmer", "client") and not args.address:
        parser.error(f"{args.mode} mode needs --address")
    if args.mode == "raw" and not (args.temporal and args.data_dir and args.queue):
        parser.error("raw mode needs --temporal, --data-dir and --queue")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse()))
    sys.stdout.flush()
    # Skip interpreter finalization: the SDK core's threads can abort it ("PyGILState_Release:
    # thread state must be current", exit -6, seen in 1 of ~20 raw runs) after the result is out.
    os._exit(0)
