"""Names, ids, task queues and timeout budgets of the Temporal layer."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.common import RetryPolicy

from stigmer.store import is_valid_id, new_id
from stigmer.temporal import names, workflows
from stigmer.temporal.agents import MAX_DELAY_SECONDS
from stigmer.temporal.names import TaskQueues


def test_workflow_types_and_ids_match_the_go_server() -> None:
    assert names.AGENT_EXECUTION_WORKFLOW == "stigmer/agent-execution/invoke"
    assert names.WORKFLOW_EXECUTION_WORKFLOW == "stigmer/workflow-execution/invoke"
    assert names.WORKFLOW_VALIDATION_WORKFLOW == "stigmer/workflow-validation/validate"
    assert names.agent_execution_workflow_id("aex-1") == "stigmer/agent-execution/invoke/aex-1"
    assert names.workflow_execution_workflow_id("wex-1") == "stigmer/workflow-execution/invoke/wex-1"


def test_task_queues_default_and_env_overrides() -> None:
    assert TaskQueues.from_env({}) == TaskQueues(
        agent_execution="agent_execution_stigmer",
        workflow_execution="workflow_execution_stigmer",
        workflow_validation="workflow_validation_stigmer",
    )
    env = {
        "TEMPORAL_AGENT_EXECUTION_STIGMER_TASK_QUEUE": "a",
        "TEMPORAL_WORKFLOW_EXECUTION_STIGMER_TASK_QUEUE": "  ",  # blank: keep the default
        "TEMPORAL_WORKFLOW_VALIDATION_STIGMER_TASK_QUEUE": "v",
    }
    assert TaskQueues.from_env(env).all() == ("a", "workflow_execution_stigmer", "v")


def test_task_queues_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_AGENT_EXECUTION_STIGMER_TASK_QUEUE", "from-os")
    assert TaskQueues.from_env().agent_execution == "from-os"


def test_task_queues_with_suffix_and_validation() -> None:
    assert TaskQueues.with_suffix("t1").all() == (
        "agent_execution_stigmer-t1",
        "workflow_execution_stigmer-t1",
        "workflow_validation_stigmer-t1",
    )
    with pytest.raises(ValueError, match="agent_execution"):
        TaskQueues(agent_execution="")


def test_step_agent_execution_id_is_deterministic_and_a_valid_id() -> None:
    wex = new_id("wex")
    first = names.step_agent_execution_id(wex, "t3")
    assert first == names.step_agent_execution_id(wex, "t3")
    assert is_valid_id("aex", first)
    assert first[4:14] == wex[4:14], "keeps the parent's time part, so it lists next to it"
    assert first != names.step_agent_execution_id(wex, "t4")
    assert first != names.step_agent_execution_id(new_id("wex"), "t3")
    assert is_valid_id("aex", names.step_agent_execution_id("not-a-store-id", "t3"))


def test_worst_case_adds_attempts_and_capped_backoff() -> None:
    retry = RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=3),
        maximum_attempts=4,
    )
    # 4 attempts of 10 s, backoffs 1 + 2 + 3 (capped)
    assert workflows.worst_case(timedelta(seconds=10), retry) == timedelta(seconds=46)
    with pytest.raises(ValueError):
        workflows.worst_case(timedelta(seconds=1), RetryPolicy())


def test_run_timeouts_exceed_the_activities_they_wrap() -> None:
    assert workflows.AGENT_EXECUTION_RUN_TIMEOUT > workflows.AGENT_EXECUTION_WORST_CASE
    validation_worst = workflows.worst_case(workflows.VALIDATION_ACTIVITY_TIMEOUT, workflows.VALIDATION_RETRY)
    assert validation_worst < workflows.VALIDATION_RUN_TIMEOUT
    # The agent runner's longest deliberate delay fits in one run-agent attempt.
    assert timedelta(seconds=MAX_DELAY_SECONDS) < workflows.AGENT_ACTIVITY_TIMEOUT


@pytest.mark.parametrize(
    ("status", "message", "expected"),
    [
        ("UNAVAILABLE", "tcp connect error", True),
        ("DEADLINE_EXCEEDED", "deadline", True),
        ("CANCELLED", "Timeout expired", True),
        ("CANCELLED", "operation was canceled", True),
        ("CANCELLED", "anything else", True),
        ("UNKNOWN", "transport error", True),
        ("UNKNOWN", "something else", False),
        ("NOT_FOUND", "namespace not found", False),
        ("INVALID_ARGUMENT", "bad", False),
    ],
)
def test_which_rpc_errors_mean_temporal_is_unreachable(status, message, expected):
    from temporalio.service import RPCError, RPCStatusCode

    from stigmer.temporal.diagnose import is_unavailable

    assert is_unavailable(RPCError(message, RPCStatusCode[status], b"")) is expected
    assert is_unavailable(RuntimeError(message)) is False
