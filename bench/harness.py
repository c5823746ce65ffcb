"""What every benchmark needs: stigmer servers as processes, a gRPC client for their API, and
probes of Temporal that see a restart as soon as it happens.

Processes come from stigmer.testing (TemporalDevServer, StigmerServerProcess), so benchmarks and tests
start, kill and clean up the same way. Every probe of Temporal dials a fresh channel: a reused
grpc channel sits in reconnect backoff (1 s and up) after a refused dial and would report a
restart late. Times are wall-clock (time.time()): the server reports its transitions in wall
time, and all processes share the machine's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, DescribeTaskQueueRequest
from temporalio.api.workflowservice.v1.service_pb2_grpc import WorkflowServiceStub

from stigmer.api import agent_execution_pb2, agent_execution_pb2_grpc, common_pb2, status_pb2, status_pb2_grpc
from stigmer.temporal.names import (
    AGENT_EXECUTION_QUEUE_ENV,
    WORKFLOW_EXECUTION_QUEUE_ENV,
    WORKFLOW_VALIDATION_QUEUE_ENV,
    TaskQueues,
)
from stigmer.testing.server import StigmerServerProcess
from stigmer.testing.temporal import TemporalDevServer

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "default"
#: Set by run.py --patch: every server started here then runs with those proposed changes.
PATCH_ENV = "STIGMER_BENCH_PATCH"


def wall(stamp: Timestamp) -> float:
    return stamp.seconds + stamp.nanos / 1e9


# ------------------------------------------------------------------------------ stigmer servers


@dataclass
class Stigmer:
    """One `stigmer server start` process with its own data dir and task queues."""

    name: str
    server: StigmerServerProcess
    queues: TaskQueues

    @property
    def address(self) -> str:
        return self.server.address

    @property
    def pid(self) -> int:
        assert self.server.proc is not None, f"{self.name} is not running"
        return self.server.proc.pid


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    # StigmerServerProcess passes this process's environment on; the queues are env-only settings.
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def start_stigmer(
    stack: contextlib.ExitStack,
    *,
    workdir: Path,
    name: str,
    temporal: str,
    health_interval: float = 15.0,
    extra: tuple[str, ...] = (),
    patch: str | None = None,
    legacy: bool = False,
) -> Stigmer:
    """Start a server (blocking until it serves its API) and register its stop on ``stack``.

    ``health_interval`` defaults to the product default (15 s); the test helper's own default is 1 s.
    ``patch`` (default: run.py --patch, via the environment) runs it through bench/patched_server.py;
    ``legacy`` adds the original Go server's reconnection design to it (bench/legacy.py).
    """
    queues = TaskQueues.with_suffix(f"bench-{name}")
    server = StigmerServerProcess(
        data_dir=workdir / name, temporal=temporal, extra=list(extra), health_interval=health_interval
    )
    env = {
        AGENT_EXECUTION_QUEUE_ENV: queues.agent_execution,
        WORKFLOW_EXECUTION_QUEUE_ENV: queues.workflow_execution,
        WORKFLOW_VALIDATION_QUEUE_ENV: queues.workflow_validation,
    }
    patch = os.environ.get(PATCH_ENV, "") if patch is None else patch
    if legacy:
        patch = ",".join(name for name in ("legacy", *patch.split(",")) if name)
    if patch:
        # An experiment (run.py --patch): the same command line through bench/patched_server.py.
        # StigmerServerProcess has no launcher option, so its argv's first word is swapped.
        server._args[:1] = [sys.executable, str(ROOT / "bench" / "patched_server.py")]
        env[PATCH_ENV] = patch
    stack.callback(server.kill)  # registered first: a failed start is still cleaned up
    with _environment(env):
        server.start()
    return Stigmer(name=name, server=server, queues=queues)


# ------------------------------------------------------------------------------ the stigmer API


class StigmerApi:
    """A grpc.aio client for one server: creates, watches and status, each call with a deadline."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._channel = grpc.aio.insecure_channel(address)
        self._executions = agent_execution_pb2_grpc.AgentExecutionServiceStub(self._channel)
        self._status = status_pb2_grpc.StatusServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    async def create(self, message: str, *, timeout: float = 10.0) -> str:  # noqa: ASYNC109
        request = agent_execution_pb2.CreateAgentExecutionRequest(agent="echo", message=message)
        created = await self._executions.Create(request, timeout=timeout)
        return created.id

    async def status(self, *, timeout: float = 2.0) -> status_pb2.ServerStatus:  # noqa: ASYNC109
        return await self._status.GetStatus(status_pb2.GetStatusRequest(), timeout=timeout)

    async def wait_state(
        self,
        *states: str,
        timeout: float,  # noqa: ASYNC109
        interval: float = 0.05,
    ) -> status_pb2.ServerStatus:
        """Poll GetStatus until the state is one of ``states``."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            with contextlib.suppress(grpc.aio.AioRpcError):
                status = await self.status()
                if status.state in states:
                    return status
                last = status.state
            await asyncio.sleep(interval)
        wanted = "/".join(states)
        raise TimeoutError(f"server {self.address} not {wanted} after {timeout:g} s (last seen {last or '-'})")

    async def wait_completed(self, execution_id: str, *, timeout: float) -> float | None:  # noqa: ASYNC109
        """Wall time at which the execution was seen COMPLETED (Watch pushes each change); None if
        it ended otherwise or the time ran out."""
        request = agent_execution_pb2.WatchAgentExecutionRequest(id=execution_id)
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for record in self._executions.Watch(request, timeout=timeout):
                if record.phase == common_pb2.COMPLETED:
                    return time.time()
                if record.phase in (common_pb2.FAILED, common_pb2.CANCELLED):
                    return None
        return None

    async def unfinished(self) -> int:
        """How many executions are PENDING or IN_PROGRESS (counted up to one page each)."""
        total = 0
        for phase in (common_pb2.PENDING, common_pb2.IN_PROGRESS):
            page = await self._executions.List(
                agent_execution_pb2.ListAgentExecutionsRequest(phase=phase, page_size=500), timeout=10.0
            )
            total += len(page.executions)
        return total

    async def drain(self, *, timeout: float) -> float:  # noqa: ASYNC109
        """Wait until every execution finished (so the next measurement starts quiet); seconds waited."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if await self.unfinished() == 0:
                return time.monotonic() - started
            await asyncio.sleep(0.25)
        raise TimeoutError(f"executions on {self.address} still unfinished after {timeout:g} s")


def transitions_after(status: status_pb2.ServerStatus, since: float) -> list[status_pb2.Transition]:
    return [t for t in status.recent_transitions if wall(t.at) >= since]


# ------------------------------------------------------------------------------ Temporal probes


async def namespace_answers(address: str, *, timeout: float = 0.5) -> bool:  # noqa: ASYNC109
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            await WorkflowServiceStub(channel).DescribeNamespace(
                DescribeNamespaceRequest(namespace=NAMESPACE), timeout=timeout
            )
        except grpc.aio.AioRpcError:
            return False
    return True


async def wait_answering(address: str, *, timeout: float, interval: float = 0.01) -> float:  # noqa: ASYNC109
    """Wall time at which DescribeNamespace first answered (probed every ``interval``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await namespace_answers(address):
            return time.time()
        await asyncio.sleep(interval)
    raise TimeoutError(f"Temporal at {address} did not answer DescribeNamespace within {timeout:g} s")


async def polled_since(address: str, queue: str, since: float) -> bool:
    """Has a worker polled ``queue`` (workflow tasks) at or after wall time ``since``?"""
    request = DescribeTaskQueueRequest(
        namespace=NAMESPACE,
        task_queue=TaskQueue(name=queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    async with grpc.aio.insecure_channel(address) as channel:
        try:
            answer = await WorkflowServiceStub(channel).DescribeTaskQueue(request, timeout=1.0)
        except grpc.aio.AioRpcError:
            return False
    return any(wall(poller.last_access_time) >= since for poller in answer.pollers)


# ------------------------------------------------------------------------------ a benchmark's context


@dataclass
class Context:
    """What run.py hands every benchmark: a scratch dir, the shared Temporal, the run's size."""

    workdir: Path
    temporal: TemporalDevServer
    quick: bool
    #: Repetitions asked for on the command line (None: each benchmark's own default).
    reps: int | None = None

    def repetitions(self, *, full: int, quick: int) -> int:
        return self.reps if self.reps is not None else (quick if self.quick else full)

    def say(self, message: str) -> None:
        """Progress on stderr, so that stdout carries only the tables."""
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
