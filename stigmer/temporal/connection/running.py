"""Starting one generation's workers and retiring them, on the workers' event loop."""

from __future__ import annotations

import asyncio

from loguru import logger
from temporalio.worker import Worker

from statemachine import describe
from stigmer.errors import StigmerError
from stigmer.temporal.names import TaskQueues

WORKER_NAMES = ("agent execution", "workflow execution", "workflow validation")


class WorkerStartError(StigmerError):
    """A worker exited, or did not report running in time, while its generation started."""


def by_queue(workers: list[Worker], queues: TaskQueues, names: tuple[str, ...] = WORKER_NAMES) -> dict[str, bool]:
    """Each task queue -> whether its worker runs (``workers`` are the ones ``names`` lists, in that
    order; a queue this process runs no worker for is False); reads flags only."""
    queue_of = dict(
        zip(WORKER_NAMES, (queues.agent_execution, queues.workflow_execution, queues.workflow_validation), strict=True)
    )
    running = {name: worker.is_running for name, worker in zip(names, workers, strict=False)}
    return {queue: running.get(name, False) for name, queue in queue_of.items()}


def spawn(workers: list[Worker], names: tuple[str, ...] = WORKER_NAMES) -> list[asyncio.Task[None]]:
    """Each worker's ``run()`` as a task on the running loop, named after it."""
    return [
        asyncio.create_task(worker.run(), name=f"stigmer-worker-{name.replace(' ', '-')}")
        for name, worker in zip(names, workers, strict=True)
    ]


async def wait_running(
    workers: list[Worker],
    tasks: list[asyncio.Task[None]],
    *,
    timeout: float,  # noqa: ASYNC109
    names: tuple[str, ...] = WORKER_NAMES,
) -> None:
    """Until every worker reports running; WorkerStartError if one exits or ``timeout`` s pass."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not all(worker.is_running for worker in workers):
        for name, task in zip(names, tasks, strict=True):
            if task.done():
                error = task.exception() if not task.cancelled() else asyncio.CancelledError()
                logger.error("Failed to start worker", worker=name, error=describe(error) if error else "exited")
                raise WorkerStartError(f"{name} worker failed to start: {describe(error) if error else 'exited'}")
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            logger.error("Failed to start worker", error=f"not running after {timeout}s")
            raise WorkerStartError(f"workers not running after {timeout:g}s")
        await asyncio.wait(tasks, timeout=min(0.005, remaining), return_when=asyncio.FIRST_COMPLETED)


async def retire(
    workers: list[Worker], tasks: list[asyncio.Task[None]], *, shutdown_timeout: float, retire_limit: float
) -> None:
    """Shut ``workers`` down and wait for their ``run()`` tasks, bounded; see the comments."""
    # shutdown() only sets a flag and then waits for run() to finish: we wait on run(). The
    # shutdown tasks are held here: the loop keeps only weak references, and one collected
    # while pending is logged as "Task was destroyed but it is pending!".
    shutdowns = [asyncio.ensure_future(worker.shutdown()) for worker in workers]
    for shutdown in shutdowns:
        shutdown.add_done_callback(_consume)
    try:
        _, pending = await asyncio.wait(tasks, timeout=shutdown_timeout)
        if pending:
            # Under load a shutdown takes up to ~10 s (in-flight completions are retried
            # first; measured by the chaos soak). Cancelling run() instead skips the SDK's
            # finalize_shutdown, and the core worker and its threads stay for good. This runs
            # in the background: reconnection does not wait for it.
            logger.info(
                "Old workers still stopping after {:g}s; letting them finish",
                shutdown_timeout,
                count=len(pending),
            )
            _, pending = await asyncio.wait(pending, timeout=retire_limit)
        if pending:
            logger.warning(
                "Old workers did not stop in time; cancelling them",
                timeout=retire_limit,
                count=len(pending),
            )
    finally:
        leftovers = [task for task in (*tasks, *shutdowns) if not task.done()]
        for task in leftovers:
            task.cancel()
        if leftovers:
            await asyncio.wait(leftovers, timeout=1.0)


def _consume(future: asyncio.Future[None]) -> None:
    """Retrieve a background future's outcome so asyncio does not warn it was never retrieved."""
    if not future.cancelled():
        future.exception()
