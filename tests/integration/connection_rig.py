"""A TemporalConnection wired to a real store and recording creators, for integration tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from stigmer.store import Phase, Store
from stigmer.temporal.agents import EchoAgentRunner
from stigmer.temporal.connection import ConnectionSettings, CreatorTargets, TemporalConnection
from stigmer.temporal.creators import AgentExecutionCreator, WorkflowExecutionCreator, WorkflowValidator
from stigmer.temporal.names import TaskQueues
from stigmer.testing.eventually import eventually


@dataclass
class Creators:
    agent_execution: AgentExecutionCreator | None = None
    workflow_execution: WorkflowExecutionCreator | None = None
    workflow_validation: WorkflowValidator | None = None
    injections: list[str] = field(default_factory=list)

    def targets(self) -> CreatorTargets:
        def setter(name: str):  # type: ignore[no-untyped-def]
            def set_(creator: object) -> None:
                setattr(self, name, creator)
                self.injections.append(f"{name}={'set' if creator else 'none'}")

            return set_

        return CreatorTargets(
            agent_execution=setter("agent_execution"),
            workflow_execution=setter("workflow_execution"),
            workflow_validation=setter("workflow_validation"),
        )

    @property
    def all_set(self) -> bool:
        return None not in (self.agent_execution, self.workflow_execution, self.workflow_validation)

    @property
    def none_set(self) -> bool:
        return (self.agent_execution, self.workflow_execution, self.workflow_validation) == (None, None, None)


def fast_settings(address: str, **overrides: object) -> ConnectionSettings:
    """Short intervals so tests observe in seconds what production does in tens of seconds."""
    base = ConnectionSettings(
        host_port=address,
        queues=TaskQueues.with_suffix(uuid.uuid4().hex[:8]),
        dial_timeout=2.0,
        verify_timeout=1.0,
        health_interval=0.5,
        health_timeout=1.0,
        worker_shutdown_timeout=2.0,
        # Every workflow these tests run goes through the SDK's sandbox: the determinism guard
        # the server itself runs without (see stigmer.temporal.workers.workflow_runner).
        workflow_sandbox=True,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


@dataclass
class Rig:
    connection: TemporalConnection
    creators: Creators
    store: Store

    @property
    def state(self) -> str:
        return self.connection.lifecycle.state.name

    async def run_agent_execution(self, message: str = "hello", *, timeout: float = 20.0) -> str:  # noqa: ASYNC109
        """Create an execution, start it through the injected creator, wait for COMPLETED."""
        creator = self.creators.agent_execution
        assert creator is not None, "no creator injected"
        execution = self.store.create_agent_execution(agent="echo", message=message)
        await creator.start(execution.id, timeout=10.0)

        def completed() -> bool:
            record = self.store.get_agent_execution(execution.id)
            assert record.phase is not Phase.FAILED, record.error
            return record.phase is Phase.COMPLETED

        await eventually(completed, timeout=timeout, what=f"{execution.id} COMPLETED")
        return execution.id


@asynccontextmanager
async def connection_rig(settings: ConnectionSettings, data_dir: Path) -> AsyncIterator[Rig]:
    store = Store.open(data_dir)
    creators = Creators()
    connection = TemporalConnection(settings, store=store, runner=EchoAgentRunner(), targets=creators.targets())
    await connection.start()
    try:
        yield Rig(connection, creators, store)
    finally:
        await asyncio.wait_for(connection.close(), timeout=15)
        store.close()


async def pollers(client: Client, queues: TaskQueues) -> list[int]:
    """Workflow pollers Temporal has seen on each of the three queues."""
    counts = []
    for queue in queues.all():
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace="default",
                task_queue=TaskQueue(name=queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            ),
            timeout=timedelta(seconds=2),
        )
        counts.append(len(response.pollers))
    return counts
