"""Names shared with operators: workflow types, workflow ids, activity names, task queues.

The workflow types, id schemes and queue names (and their env overrides) are kept from the
original Go server so that operators find the same things in the Temporal UI and CLI.
This module is imported inside the workflow sandbox: keep it pure (no I/O, no globals with state).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

# Workflow types.
AGENT_EXECUTION_WORKFLOW = "stigmer/agent-execution/invoke"
WORKFLOW_EXECUTION_WORKFLOW = "stigmer/workflow-execution/invoke"
WORKFLOW_VALIDATION_WORKFLOW = "stigmer/workflow-validation/validate"

# Activity types. Referenced by name from the workflows, so the workflow code never has to
# import the store-backed activity implementations into the sandbox.
MARK_AGENT_EXECUTION_STARTED = "stigmer/agent-execution/mark-started"
RUN_AGENT = "stigmer/agent-execution/run-agent"
COMPLETE_AGENT_EXECUTION = "stigmer/agent-execution/complete"
FAIL_AGENT_EXECUTION = "stigmer/agent-execution/fail"
CANCEL_AGENT_EXECUTION = "stigmer/agent-execution/cancel"

MARK_WORKFLOW_EXECUTION_STARTED = "stigmer/workflow-execution/mark-started"
CREATE_STEP_AGENT_EXECUTION = "stigmer/workflow-execution/create-agent-execution"
SET_TASK_STATUS = "stigmer/workflow-execution/set-task-status"
COMPLETE_WORKFLOW_EXECUTION = "stigmer/workflow-execution/complete"
FAIL_WORKFLOW_EXECUTION = "stigmer/workflow-execution/fail"
CANCEL_WORKFLOW_EXECUTION = "stigmer/workflow-execution/cancel"

VALIDATE_WORKFLOW_DOCUMENT = "stigmer/workflow-validation/validate-document"

# The error type a deliberate agent failure is raised as; the run-agent retry policy lists it
# as non-retryable (running a failing agent again gives the same answer).
AGENT_FAILURE_ERROR_TYPE = "AgentFailure"


def agent_execution_workflow_id(execution_id: str) -> str:
    """Temporal workflow id of an agent execution: equal to the execution id, namespaced."""
    return f"{AGENT_EXECUTION_WORKFLOW}/{execution_id}"


def workflow_execution_workflow_id(execution_id: str) -> str:
    """Temporal workflow id of a workflow execution: equal to the execution id, namespaced."""
    return f"{WORKFLOW_EXECUTION_WORKFLOW}/{execution_id}"


def workflow_validation_workflow_id(request_id: str) -> str:
    """Temporal workflow id of one validation request (validations are not stored)."""
    return f"{WORKFLOW_VALIDATION_WORKFLOW}/{request_id}"


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_ULID_TIME = re.compile(r"[a-z][a-z0-9]*-([0-7][0-9A-HJKMNP-TV-Z]{9})[0-9A-HJKMNP-TV-Z]{16}")


def step_agent_execution_id(workflow_execution_id: str, task_name: str) -> str:
    """The id of the agent execution an `agent` task creates: a pure function of its inputs.

    Deterministic so that a retried create activity (or a re-run of the workflow) finds the
    record it made before instead of making a second one. It is shaped like any ``aex-`` ULID:
    the time part is the workflow execution's (so listings order it next to its parent) and the
    80 "random" bits come from a hash of the workflow execution id and the task name.
    """
    digest = hashlib.sha256(f"{workflow_execution_id}/{task_name}".encode()).digest()
    match = _ULID_TIME.fullmatch(workflow_execution_id)
    if match:
        time_part = match.group(1)
        bits, count = int.from_bytes(digest[:10], "big"), 16  # 80 bits
    else:  # not a store id (hand-made in a test, say): hash everything, still a valid ULID
        time_part = ""
        bits, count = int.from_bytes(digest[:16], "big"), 26  # 128 bits, first char <= "7"
    chars = [_CROCKFORD[(bits >> (5 * i)) & 0x1F] for i in reversed(range(count))]
    return f"aex-{time_part}{''.join(chars)}"


AGENT_EXECUTION_QUEUE_ENV = "TEMPORAL_AGENT_EXECUTION_STIGMER_TASK_QUEUE"
WORKFLOW_EXECUTION_QUEUE_ENV = "TEMPORAL_WORKFLOW_EXECUTION_STIGMER_TASK_QUEUE"
WORKFLOW_VALIDATION_QUEUE_ENV = "TEMPORAL_WORKFLOW_VALIDATION_STIGMER_TASK_QUEUE"


@dataclass(frozen=True)
class TaskQueues:
    """The three task queues, one per worker. Tests build their own unique set."""

    agent_execution: str = "agent_execution_stigmer"
    workflow_execution: str = "workflow_execution_stigmer"
    workflow_validation: str = "workflow_validation_stigmer"

    def __post_init__(self) -> None:
        for field, value in (
            ("agent_execution", self.agent_execution),
            ("workflow_execution", self.workflow_execution),
            ("workflow_validation", self.workflow_validation),
        ):
            if not value or value != value.strip():
                raise ValueError(f"task queue {field} must be a non-empty name without spaces, got {value!r}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TaskQueues:
        """Defaults, each overridden by its env variable when that is set and non-empty."""
        env = os.environ if environ is None else environ
        default = cls()

        def pick(name: str, fallback: str) -> str:
            value = env.get(name, "").strip()
            return value or fallback

        return cls(
            agent_execution=pick(AGENT_EXECUTION_QUEUE_ENV, default.agent_execution),
            workflow_execution=pick(WORKFLOW_EXECUTION_QUEUE_ENV, default.workflow_execution),
            workflow_validation=pick(WORKFLOW_VALIDATION_QUEUE_ENV, default.workflow_validation),
        )

    @classmethod
    def with_suffix(cls, suffix: str) -> TaskQueues:
        """The default names with a suffix: lets tests (and parallel servers) share one Temporal."""
        default = cls()
        return cls(
            agent_execution=f"{default.agent_execution}-{suffix}",
            workflow_execution=f"{default.workflow_execution}-{suffix}",
            workflow_validation=f"{default.workflow_validation}-{suffix}",
        )

    def all(self) -> tuple[str, str, str]:
        return (self.agent_execution, self.workflow_execution, self.workflow_validation)
