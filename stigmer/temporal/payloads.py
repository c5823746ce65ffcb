"""The data passed between workflows, activities and creators (Temporal payloads).

Plain dataclasses of str/bool/list/dict, so the default JSON converter round-trips them and a
later version can add fields with defaults without breaking running workflows. Phases and task
statuses travel as their string values (the store's StrEnum values). Imported in the sandbox.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# -- agent execution ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentExecutionInput:
    """Input of the agent execution workflow."""

    execution_id: str


@dataclass(frozen=True)
class AgentExecutionView:
    """What the workflow needs of a stored agent execution (returned by mark-started)."""

    execution_id: str
    agent: str
    message: str
    runtime_env: dict[str, str]
    phase: str
    replies: list[str] = field(default_factory=list)
    error: str = ""


@dataclass(frozen=True)
class RunAgentInput:
    execution_id: str
    agent: str
    message: str
    runtime_env: dict[str, str]


@dataclass(frozen=True)
class CompleteAgentExecutionInput:
    execution_id: str
    replies: list[str]


@dataclass(frozen=True)
class FailExecutionInput:
    """Input of both fail activities (agent execution and workflow execution)."""

    execution_id: str
    error: str


@dataclass(frozen=True)
class CancelExecutionInput:
    """Input of both cancel activities.

    ``only_if_requested``: cancel only if somebody asked stigmer to (the workflow saw a step end
    CANCELLED, which may be that step's own cancel); otherwise report the record unchanged.
    """

    execution_id: str
    only_if_requested: bool = False


@dataclass(frozen=True)
class AgentExecutionResult:
    """Result of the agent execution workflow: the recorded terminal state."""

    execution_id: str
    phase: str
    replies: list[str] = field(default_factory=list)
    error: str = ""


# -- workflow execution ------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkflowExecutionInput:
    """Input of the workflow execution workflow.

    The agent queue travels with the input because a child workflow otherwise runs on its
    parent's queue, and the agent execution workflow is only registered on the agent queue.
    """

    execution_id: str
    agent_task_queue: str


@dataclass(frozen=True)
class WorkflowExecutionView:
    """What the workflow needs of a stored workflow execution (returned by mark-started)."""

    execution_id: str
    document: str
    input: str
    phase: str
    output: str = ""
    error: str = ""


@dataclass(frozen=True)
class CreateStepAgentExecutionInput:
    workflow_execution_id: str
    task_name: str
    agent: str
    message: str
    runtime_env: dict[str, str]


@dataclass(frozen=True)
class SetTaskStatusInput:
    execution_id: str
    task: str
    status: str
    output: str = ""
    error: str = ""


@dataclass(frozen=True)
class CompleteWorkflowExecutionInput:
    execution_id: str
    output: str


@dataclass(frozen=True)
class WorkflowExecutionResult:
    """Result of the workflow execution workflow: the recorded terminal state."""

    execution_id: str
    phase: str
    output: str = ""
    error: str = ""
    failed_task: str = ""


# -- validation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidationInput:
    """Input of the validation workflow: the document text as submitted."""

    document: str
