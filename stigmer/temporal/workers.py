"""Worker factory: three workers, one per task queue, each registering only what it runs.

Workers are built fresh for every connection (stigmer.temporal.connection's `TemporalConnection` starts them on
entering CONNECTED and shuts them down on leaving it): a worker is tied to the client it was
built with, and re-pointing an old worker at a new client does not unstick its polls.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from stigmer.store import Store
from stigmer.temporal.activities import (
    AgentExecutionActivities,
    WorkflowExecutionActivities,
    validate_workflow_document,
)
from stigmer.temporal.agents import AgentRunner
from stigmer.temporal.names import TaskQueues
from stigmer.temporal.workflows import (
    AgentExecutionWorkflow,
    WorkflowExecutionWorkflow,
    WorkflowValidationWorkflow,
)

#: Heartbeats reach Temporal at most this long apart (the SDK's default is 80 % of the 5 s heartbeat
#: timeout): a cancel is delivered in the answer to a heartbeat, and must stop an agent within 2 s.
MAX_HEARTBEAT_THROTTLE = timedelta(seconds=1)

# Long enough for a store write in flight to land; short enough that shutdown stays bounded.
# Running agents are cancelled after it (they heartbeat, so they notice) and retried elsewhere.
DEFAULT_GRACEFUL_SHUTDOWN = timedelta(seconds=2)

FatalErrorHandler = Callable[[BaseException], Awaitable[None]]

#: Pure, deterministic helpers the workflows use, shared with the sandbox instead of re-imported
#: into it. workflows.py imports them inside ``imports_passed_through()``, but as names in a
#: from-list (``from stigmer.temporal import names``), which importlib loads past the sandbox's
#: import hook: without this list every new workflow instance re-executed all three modules, on
#: the event loop (~13 ms of a create's latency under load; ~2 ms with it, bench/ measures it).
PASSTHROUGH_MODULES = (
    "stigmer.errors",
    "stigmer.temporal.names",
    "stigmer.temporal.payloads",
    "stigmer.workflows",
    "stigmer.workflows.jsontext",
    "stigmer.workflows.limits",
    "stigmer.workflows.templating",
    "stigmer.workflows.workflowdoc",
)


def workflow_runner(*, sandbox: bool) -> WorkflowRunner:
    """How workflow code runs: in the SDK's sandbox (our pure helper modules passed through), or not.

    The sandbox re-imports the workflow module for every new workflow instance and proxies the
    modules workflow code touches: about 1.5-3.5 ms of CPU per instance here, taken under the GIL
    right while the create that started it is finishing. Unsandboxed, a create through the API
    costs 2-3 ms more than a bare start_workflow instead of 9-10 ms (bench/, docs/benchmarks.md).
    The sandbox is a determinism guard for workflow code; the test suite runs every workflow
    under it (tests/integration), so the server can run without it (``--workflow-sandbox`` puts
    it back).
    """
    if not sandbox:
        return UnsandboxedWorkflowRunner()
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH_MODULES)
    )


def build_workers(
    client: Client,
    *,
    store: Store,
    runner: AgentRunner,
    queues: TaskQueues,
    graceful_shutdown_timeout: timedelta = DEFAULT_GRACEFUL_SHUTDOWN,
    on_fatal_error: FatalErrorHandler | None = None,
    sandbox: bool = False,
    only: Collection[str] | None = None,
) -> list[Worker]:
    """The agent execution, workflow execution and validation workers, in that order (``only``: those
    named, stigmer.temporal.connection.WORKER_NAMES).

    Not started: the caller runs them (``worker.run()``) and shuts them down. `on_fatal_error`
    is passed to every worker, so a poller failure can be turned into a state change. `sandbox`
    runs workflow code in the SDK's sandbox (see workflow_runner).
    """
    agent_activities = AgentExecutionActivities(store=store, runner=runner)
    workflow_activities = WorkflowExecutionActivities(store=store)
    runner_for_workflows = workflow_runner(sandbox=sandbox)

    def worker(task_queue: str, workflows: list[type], activities: list[Callable[..., object]]) -> Worker:
        return Worker(
            client,
            task_queue=task_queue,
            workflows=workflows,
            activities=activities,
            workflow_runner=runner_for_workflows,
            graceful_shutdown_timeout=graceful_shutdown_timeout,
            on_fatal_error=on_fatal_error,
            max_heartbeat_throttle_interval=MAX_HEARTBEAT_THROTTLE,
            default_heartbeat_throttle_interval=MAX_HEARTBEAT_THROTTLE,
        )

    makers: dict[str, Callable[[], Worker]] = {
        "agent execution": lambda: worker(
            queues.agent_execution, [AgentExecutionWorkflow], list(agent_activities.all())
        ),
        "workflow execution": lambda: worker(
            queues.workflow_execution, [WorkflowExecutionWorkflow], list(workflow_activities.all())
        ),
        "workflow validation": lambda: worker(
            queues.workflow_validation, [WorkflowValidationWorkflow], [validate_workflow_document]
        ),
    }
    return [make() for name, make in makers.items() if only is None or name in only]
