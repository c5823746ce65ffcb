"""Store records and connection snapshots -> protobuf: phases, timestamps, unset times, text as is."""

from __future__ import annotations

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from statemachine import Snapshot, State, TransitionEvent, Trigger
from stigmer.api import common_pb2, workflow_execution_pb2
from stigmer.errors import InvalidArgumentError
from stigmer.server import convert
from stigmer.store import AgentExecution, Message, Phase, TaskState, TaskStatus, Workflow, WorkflowExecution
from stigmer.temporal.status import ConnectionStatus
from stigmer.workflows.workflowdoc import ValidationResult

TRICKY = "héllo 世界 🚀 \"double\" 'single' `back` \\ ; DROP TABLE agent_executions; -- \x00 \t\r\n end"
T0 = 1_700_000_000.123456


def agent_execution(**overrides: object) -> AgentExecution:
    fields: dict[str, object] = dict(
        id="aex-01J9Z3K4T8Q6W2C5N7R1V0XBYD",
        agent="echo",
        message=TRICKY,
        runtime_env={"KEY": TRICKY, "EMPTY": ""},
        phase=Phase.PENDING,
        messages=(Message(role="user", text=TRICKY, at=T0),),
        error="",
        created_at=T0,
        started_at=None,
        completed_at=None,
        workflow_id="stigmer/agent-execution/invoke/aex-01J9Z3K4T8Q6W2C5N7R1V0XBYD",
        parent_id="",
        version=1,
    )
    fields.update(overrides)
    return AgentExecution(**fields)  # type: ignore[arg-type]


def workflow_execution(**overrides: object) -> WorkflowExecution:
    fields: dict[str, object] = dict(
        id="wex-01J9Z3K4T8Q6W2C5N7R1V0XBYD",
        workflow_id="wf-01J9Z3K4T8Q6W2C5N7R1V0XBYD",
        workflow_name="greet",
        input='{"user": "Zoë"}',
        phase=Phase.IN_PROGRESS,
        tasks=(
            TaskState(name="t1", kind="set", status=TaskStatus.COMPLETED, output='{"k": 1}', error=""),
            TaskState(name="t2", kind="agent", status=TaskStatus.RUNNING, output="", error=""),
            TaskState(name="t3", kind="wait", status=TaskStatus.PENDING, output="", error=""),
        ),
        output="",
        error="",
        created_at=T0,
        started_at=T0 + 1,
        completed_at=None,
        temporal_workflow_id="stigmer/workflow-execution/invoke/wex-01J9Z3K4T8Q6W2C5N7R1V0XBYD",
        version=3,
    )
    fields.update(overrides)
    return WorkflowExecution(**fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- scalars


def test_timestamp_keeps_microseconds() -> None:
    stamp = convert.timestamp(T0)
    assert stamp.seconds == 1_700_000_000
    assert abs(stamp.nanos - 123_456_000) < 1_000
    assert convert.seconds(stamp) == pytest.approx(T0, abs=1e-6)


def test_timestamp_rejects_non_finite_times() -> None:
    with pytest.raises(ValueError, match="finite"):
        convert.timestamp(float("nan"))


@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))  # 1970 .. 2100
def test_timestamp_round_trips_within_a_microsecond(value: float) -> None:
    stamp = convert.timestamp(value)
    assert 0 <= stamp.nanos < 1_000_000_000
    assert convert.seconds(stamp) == pytest.approx(value, abs=1e-6)


@pytest.mark.parametrize("phase", list(Phase))
def test_every_store_phase_has_the_proto_phase_of_the_same_name(phase: Phase) -> None:
    value = convert.phase_to_proto(phase)
    assert common_pb2.ExecutionPhase.Name(value) == phase.value
    assert convert.phase_filter(value) == phase.value


def test_unspecified_phase_filter_means_any_phase() -> None:
    assert convert.phase_filter(common_pb2.EXECUTION_PHASE_UNSPECIFIED) == ""


@pytest.mark.parametrize("value", [6, 42, -1, 2**31 - 1])
def test_unknown_phase_number_is_an_invalid_argument_naming_the_field(value: int) -> None:
    with pytest.raises(InvalidArgumentError) as info:
        convert.phase_filter(value)
    assert info.value.field == "phase"
    assert str(value) in str(info.value) and "COMPLETED (3)" in str(info.value)


# ---------------------------------------------------------------------------------------- records


def test_pending_agent_execution_copies_text_verbatim_and_leaves_future_times_unset() -> None:
    out = convert.agent_execution_to_proto(agent_execution())
    assert out.id == "aex-01J9Z3K4T8Q6W2C5N7R1V0XBYD"
    assert out.message == TRICKY and out.runtime_env["KEY"] == TRICKY and out.runtime_env["EMPTY"] == ""
    assert out.phase == common_pb2.PENDING
    assert [(m.role, m.text) for m in out.messages] == [("user", TRICKY)]
    assert convert.seconds(out.messages[0].at) == pytest.approx(T0, abs=1e-6)
    assert out.HasField("created_at")
    assert not out.HasField("started_at") and not out.HasField("completed_at")
    assert out.temporal_workflow_id.endswith(out.id)
    # Round trip through the wire format: nothing is lost or re-encoded.
    again = type(out).FromString(out.SerializeToString())
    assert again.message.encode() == TRICKY.encode()


def test_completed_agent_execution_has_all_times_and_replies_in_order() -> None:
    record = agent_execution(
        phase=Phase.COMPLETED,
        messages=(Message("user", "hi", T0), Message("agent", "one", T0 + 1), Message("agent", "two", T0 + 2)),
        started_at=T0 + 0.5,
        completed_at=T0 + 2,
        parent_id="wex-01J9Z3K4T8Q6W2C5N7R1V0XBYD",
    )
    out = convert.agent_execution_to_proto(record)
    assert out.phase == common_pb2.COMPLETED
    assert [m.text for m in out.messages] == ["hi", "one", "two"]
    assert convert.seconds(out.started_at) == pytest.approx(T0 + 0.5, abs=1e-6)
    assert convert.seconds(out.completed_at) == pytest.approx(T0 + 2, abs=1e-6)
    assert out.parent_id == "wex-01J9Z3K4T8Q6W2C5N7R1V0XBYD"


def test_failed_agent_execution_carries_its_error() -> None:
    out = convert.agent_execution_to_proto(agent_execution(phase=Phase.FAILED, error="boom", completed_at=T0))
    assert out.phase == common_pb2.FAILED and out.error == "boom" and out.HasField("completed_at")


def test_workflow_carries_document_and_validation() -> None:
    document = '{ "name":"greet",\n  "tasks": [] , "description": "Zoë" }'
    record = Workflow(
        id="wf-01J9Z3K4T8Q6W2C5N7R1V0XBYD",
        name="greet",
        document=document,
        valid=False,
        validation_errors=("tasks: empty", "x"),
        created_at=T0,
        version=1,
    )
    out = convert.workflow_to_proto(record)
    assert out.document == document
    assert not out.validation.valid and list(out.validation.errors) == ["tasks: empty", "x"]
    assert convert.seconds(out.created_at) == pytest.approx(T0, abs=1e-6)


def test_validation_result() -> None:
    assert convert.validation_to_proto(ValidationResult(valid=True)).valid
    out = convert.validation_to_proto(ValidationResult(valid=False, errors=["a", "b"]))
    assert not out.valid and list(out.errors) == ["a", "b"]


def test_workflow_execution_tasks_keep_order_status_and_output() -> None:
    out = convert.workflow_execution_to_proto(workflow_execution())
    assert out.input == '{"user": "Zoë"}' and out.workflow_name == "greet"
    assert out.phase == common_pb2.IN_PROGRESS
    assert [(t.name, t.kind, t.status) for t in out.tasks] == [
        ("t1", "set", workflow_execution_pb2.TaskState.COMPLETED),
        ("t2", "agent", workflow_execution_pb2.TaskState.RUNNING),
        ("t3", "wait", workflow_execution_pb2.TaskState.PENDING),
    ]
    assert out.tasks[0].output == '{"k": 1}'
    assert out.HasField("started_at") and not out.HasField("completed_at")


@pytest.mark.parametrize("status", list(TaskStatus))
def test_every_task_status_has_the_proto_status_of_the_same_name(status: TaskStatus) -> None:
    task = TaskState(name="t", kind="set", status=status, output="", error="")
    assert workflow_execution_pb2.TaskState.TaskStatus.Name(convert.task_to_proto(task).status) == status.value


# ---------------------------------------------------------------------------------------- status


def event(seq: int, source: State, dest: State, trigger: str, *, wall: float, attempt: int = 0) -> TransitionEvent:
    return TransitionEvent(
        seq=seq,
        source=source,
        dest=dest,
        trigger=Trigger(trigger),
        cause=f"cause {seq}",
        attempt=attempt,
        at=100.0 + seq,
        wall=wall,
    )


def snapshot(state: State, **overrides: object) -> Snapshot:
    fields: dict[str, object] = dict(
        state=state,
        since=50.0,
        since_wall=T0,
        attempt=0,
        next_retry_at=None,
        next_retry_in=None,
        last_error="",
        generation=1,
        reconnect_count=0,
        recent=(),
    )
    fields.update(overrides)
    return Snapshot(**fields)  # type: ignore[arg-type]


def test_connected_status() -> None:
    recent = (
        event(1, State.DISCONNECTED, State.CONNECTING, "start", wall=T0 - 1),
        event(2, State.CONNECTING, State.CONNECTED, "connect_ok", wall=T0),
    )
    status = ConnectionStatus(
        snapshot=snapshot(State.CONNECTED, recent=recent),
        workers_running=3,
        host_port="127.0.0.1:7233",
        namespace="default",
    )
    out = convert.server_status_to_proto(status, version="9.9.9", now_wall=T0 + 5)
    assert out.state == "CONNECTED" and out.workers_running == 3 and out.attempt == 0
    assert out.temporal_address == "127.0.0.1:7233" and out.namespace == "default" and out.server_version == "9.9.9"
    assert convert.seconds(out.since) == pytest.approx(T0, abs=1e-6)
    # Nothing scheduled: the time is unset and the countdown is 0, as the API says.
    assert not out.HasField("next_retry_at") and out.next_retry_in_seconds == 0
    assert [(t.seq, t.source, t.dest, t.trigger, t.cause) for t in out.recent_transitions] == [
        (1, "DISCONNECTED", "CONNECTING", "start", "cause 1"),
        (2, "CONNECTING", "CONNECTED", "connect_ok", "cause 2"),
    ]
    assert convert.seconds(out.recent_transitions[1].at) == pytest.approx(T0, abs=1e-6)


def test_unhealthy_status_reports_the_next_retry_in_wall_time() -> None:
    snap = snapshot(
        State.UNHEALTHY, attempt=3, next_retry_at=200.0, next_retry_in=4.5, last_error="refused", reconnect_count=2
    )
    status = ConnectionStatus(snapshot=snap, workers_running=0, host_port="h:1", namespace="ns")
    out = convert.server_status_to_proto(status, version="1", now_wall=T0)
    assert out.state == "UNHEALTHY" and out.attempt == 3 and out.last_error == "refused"
    assert out.workers_running == 0 and out.reconnect_count == 2
    assert out.next_retry_in_seconds == pytest.approx(4.5)
    assert convert.seconds(out.next_retry_at) == pytest.approx(T0 + 4.5, abs=1e-6)


def test_timestamp_type_is_the_well_known_one() -> None:
    assert isinstance(convert.timestamp(0.0), Timestamp)
