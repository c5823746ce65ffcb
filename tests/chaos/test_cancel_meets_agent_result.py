"""A finding of the chaos soak, replayed: an agent's result and a cancel in the same workflow task.

The soak cancels executions while faults fly. Its server logged, now and then (twice in one
persisted soak, once in an in-memory one),

    [ERROR] Future exception was never retrieved
    future: <Future finished exception=ActivityError('Activity task failed')>
    temporalio.exceptions.ApplicationError: AgentFailure: deliberate failure of persisted-c2-9

and the execution ended CANCELLED. Its Temporal history (histories/, events 1-16 of the real one,
stack traces cut) says why: the agent failed (event 13, ActivityTaskFailed) 0.13 s *before* the
cancel was requested (event 15), and both reached the workflow in one workflow task (16), after a
reconnection had delayed it. In one activation the SDK lets the cancel win
(RAISE_ON_CANCELLING_COMPLETED_ACTIVITY: the run-agent activity is done, the workflow is
cancelled, CancelledError is raised and the activity's outcome dropped, hence the "never
retrieved"), and AgentExecutionWorkflow then records CANCELLED. The API promises the opposite:
Cancel "reaches phase CANCELLED once its agent has stopped ..., or stays COMPLETED/FAILED if it
finished first". With a reply instead of a failure (the same history, event 13 made an
ActivityTaskCompleted) the agent's reply is dropped and the execution recorded CANCELLED.

Deterministic: the Replayer runs stigmer's workflow over the history (no worker, no server) and an
interceptor records the activities it schedules. Fixed in stigmer/temporal/workflows.py
(``_outcome``: the agent's activity is awaited shielded, and a cancel only asks it to stop).
"""

from __future__ import annotations

import base64
import copy
import gc
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import (
    Interceptor,
    Replayer,
    StartActivityInput,
    UnsandboxedWorkflowRunner,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)
from temporalio.workflow import ActivityHandle

from stigmer.temporal import names
from stigmer.temporal.workflows import AgentExecutionWorkflow

HISTORY = Path(__file__).with_name("histories") / "agent-failed-then-cancel-requested.json"
WORKFLOW_ID = f"{names.AGENT_EXECUTION_WORKFLOW}/aex-01M91EC1TZYX4N8BSAT6TZAEJV"
REPLY = "[echo] chaos persisted-c2-9"

#: The activities the replayed workflow scheduled, in order (the replayer runs it on this thread).
scheduled: list[str] = []


class _Outbound(WorkflowOutboundInterceptor):
    def start_activity(self, input: StartActivityInput) -> ActivityHandle[Any]:
        scheduled.append(input.activity)
        return super().start_activity(input)


class _Inbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_Outbound(outbound))


class RecordActivities(Interceptor):
    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[WorkflowInboundInterceptor]:
        return _Inbound


def history(*, agent_replied: bool) -> WorkflowHistory:
    """The soak's history; with ``agent_replied``, event 13 is the agent's reply instead of its failure."""
    events = json.loads(HISTORY.read_text())["events"]
    if agent_replied:
        failed = events[12]
        assert failed["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_FAILED"
        attributes = failed.pop("activityTaskFailedEventAttributes")
        payload = {"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                   "data": base64.b64encode(json.dumps([REPLY]).encode()).decode()}  # fmt: skip
        failed["eventType"] = "EVENT_TYPE_ACTIVITY_TASK_COMPLETED"
        failed["activityTaskCompletedEventAttributes"] = {
            "result": {"payloads": [payload]},
            "scheduledEventId": attributes["scheduledEventId"],
            "startedEventId": attributes["startedEventId"],
        }
    return WorkflowHistory.from_json(WORKFLOW_ID, {"events": copy.deepcopy(events)})


async def replay(workflow_history: WorkflowHistory) -> list[str]:
    scheduled.clear()
    replayer = Replayer(
        workflows=[AgentExecutionWorkflow],
        interceptors=[RecordActivities()],
        workflow_runner=UnsandboxedWorkflowRunner(),
    )
    result = await replayer.replay_workflow(workflow_history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
    return list(scheduled)


def test_the_history_is_the_soaks() -> None:
    """The premise: the agent failed before the cancel was requested, and one workflow task saw both."""
    events = json.loads(HISTORY.read_text())["events"]
    kinds = [e["eventType"].removeprefix("EVENT_TYPE_") for e in events]
    assert kinds[12:] == [
        "ACTIVITY_TASK_FAILED",
        "WORKFLOW_TASK_SCHEDULED",
        "WORKFLOW_EXECUTION_CANCEL_REQUESTED",
        "WORKFLOW_TASK_STARTED",
    ]
    assert events[12]["eventTime"] < events[14]["eventTime"]


async def test_an_agent_that_failed_before_the_cancel_stays_failed(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        activities = await replay(history(agent_replied=False))
        gc.collect()  # an unretrieved future's exception is reported when the future is collected
    dropped = [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()]
    assert activities == [
        names.MARK_AGENT_EXECUTION_STARTED,
        names.RUN_AGENT,
        names.FAIL_AGENT_EXECUTION,
    ], f"scheduled {activities}; logged {dropped}"
    assert dropped == []


async def test_an_agent_that_replied_before_the_cancel_stays_completed() -> None:
    activities = await replay(history(agent_replied=True))
    assert activities == [
        names.MARK_AGENT_EXECUTION_STARTED,
        names.RUN_AGENT,
        names.COMPLETE_AGENT_EXECUTION,
    ], f"scheduled {activities}"
