"""The soak's judge can fail: a synthetic run with every promise broken fails every row it should."""

from __future__ import annotations

import collections

from stigmer.api import agent_execution_pb2, common_pb2, status_pb2, workflow_execution_pb2
from tests.chaos.harness import Checkpoint, Fault, FaultKind, FaultRecord, SoakResult
from tests.chaos.load import Attempt, Kind
from tests.chaos.procstats import ProcStats
from tests.chaos.report import judge

Msg = common_pb2.Message


def stats(fds: int, **threads: int) -> ProcStats:
    names = collections.Counter({"workflow-proces": 3, "temporal-real-s": 3, "stigmer": 5, **threads})
    return ProcStats(fds=fds, threads=sum(names.values()), fd_kinds=collections.Counter(socket=fds), thread_names=names)


def attempt(tag: str, kind: Kind, code: str, id: str = "", state: str = "") -> Attempt:
    return Attempt("c0", kind, tag, started=1.0, ended=2.0, code=code, id=id, state=state)


def aex(id: str, message: str, phase: int, *replies: str, error: str = "") -> agent_execution_pb2.AgentExecution:
    messages = [Msg(role="user", text=message), *(Msg(role="agent", text=r) for r in replies)]
    return agent_execution_pb2.AgentExecution(id=id, message=message, phase=phase, messages=messages, error=error)


def result(*, attempts, agents, workflows=(), log="", end=None, state="CONNECTED") -> SoakResult:
    fault = FaultRecord(
        fault=Fault(index=0, kind=FaultKind.PROXY_REFUSE, hold=1.0, gap=1.0),
        injected_at=1.0,
        repaired_at=2.0,
        recovered_at=2.5,
        transitions=["UNHEALTHY", "CONNECTED"],
    )
    points = [
        Checkpoint(name="baseline", pid=1, stats=stats(36), settled_in=1.0),
        Checkpoint(name="final", pid=1, stats=end or stats(36), settled_in=1.0),
    ]
    return SoakResult(
        mode="t",
        seed=1,
        faults=[fault],
        attempts=list(attempts),
        checkpoints=points,
        stigmer_down=[],
        final_status=status_pb2.ServerStatus(state=state, workers_running=3),
        agent_executions=list(agents),
        workflow_executions=list(workflows),
        log=log,
        wall=1.0,
        client_errors=[],
    )


def test_a_clean_run_passes():
    ok = attempt("t-1", Kind.AGENT, "OK", id="aex-1")
    refused = attempt("t-2", Kind.AGENT, "UNAVAILABLE", state="UNHEALTHY")
    wex = workflow_execution_pb2.WorkflowExecution(
        id="wex-1", input='{"user": "t-3"}', phase=common_pb2.COMPLETED, output='{"greeting":"Hello, t-3!"}'
    )
    report = judge(
        result(
            attempts=[ok, refused, attempt("t-3", Kind.WORKFLOW, "OK", id="wex-1")],
            agents=[aex("aex-1", "chaos t-1", common_pb2.COMPLETED, "[echo] chaos t-1")],
            workflows=[wex],
            log="12:00 [INFO] ✅ Temporal reconnected successfully\n",
        ),
        persisted=True,
    )
    assert report.passed, report.table()


def test_every_broken_promise_fails_its_row():
    attempts = [
        attempt("t-1", Kind.AGENT, "OK", id="aex-1"),  # stuck IN_PROGRESS
        attempt("t-2", Kind.AGENT, "UNAVAILABLE", state="UNHEALTHY"),  # ... but recorded
        attempt("t-3", Kind.AGENT, "INTERNAL"),
        attempt("t-4", Kind.AGENT, "DEADLINE_EXCEEDED"),
        attempt("t-5", Kind.AGENT, "OK", id="aex-5"),  # replied twice
        attempt("t-6", Kind.AGENT, "OK", id="aex-6"),  # lost, under persistence
        attempt("t-7", Kind.AGENT, "UNAVAILABLE"),  # server unreachable, and it was never killed
        attempt("t-8", Kind.SLOW_AGENT, "OK", id="aex-8"),  # its attempts all lost
    ]
    agents = [
        aex("aex-1", "chaos t-1", common_pb2.IN_PROGRESS),
        aex("aex-2", "chaos t-2", common_pb2.COMPLETED, "[echo] chaos t-2"),
        aex("aex-5", "chaos t-5", common_pb2.COMPLETED, "[echo] chaos t-5", "[echo] chaos t-5"),
        aex(
            "aex-6",
            "chaos t-6",
            common_pb2.FAILED,
            error="Temporal lost this execution's workflow (was Temporal restarted without persistence?)",
        ),
        aex("aex-8", "chaos t-8", common_pb2.FAILED, error="timed out (heartbeat timeout)"),
    ]
    log = "".join(
        [
            "Traceback (most recent call last):\n",
            "12:00 [ERROR] boom\n",
            *["12:00 [WARN] Temporal reconnection failed, will retry (attempt 1)\n"] * 9,
        ]
    )
    report = judge(
        result(attempts=attempts, agents=agents, log=log, state="UNHEALTHY", end=stats(40, **{"workflow-proces": 6})),
        persisted=True,
    )
    failed = set(report.violations)
    assert {
        "stuck in PENDING/IN_PROGRESS (all records, steps too)",
        "  that left a record",
        "codes other than UNAVAILABLE for faults (INTERNAL, UNKNOWN, ...)",
        "client-side DEADLINE_EXCEEDED (20 s)",
        "COMPLETED agent executions with exactly one agent reply",
        "  FAILED: in-memory Temporal lost the workflow",
        "  server unreachable outside its restart",
        "  FAILED: every attempt of the agent cut by a fault",
        "server ends CONNECTED with three workers",
        "fds, threads, tasks, pid 1: baseline -> final",
        "server log: tracebacks",
        "server log: ERROR lines",
        "server log: most repeats of one line between two faults",
    } <= failed, report.table()


def test_growing_asyncio_tasks_are_a_leak():
    import dataclasses

    from tests.chaos.procstats import resource_problems

    base = dataclasses.replace(stats(36), tasks=45)
    assert resource_problems(base, dataclasses.replace(stats(36), tasks=45)) == []
    assert resource_problems(base, dataclasses.replace(stats(36), tasks=44)) == []
    assert resource_problems(base, dataclasses.replace(stats(36), tasks=52)) == ["asyncio tasks 45 -> 52"]


def test_a_start_held_back_past_the_task_timeout_fails_unless_a_fault_was_in_between():
    from google.protobuf.timestamp_pb2 import Timestamp

    def timed(id: str, created: float, started: float) -> agent_execution_pb2.AgentExecution:
        record = aex(id, f"chaos {id}", common_pb2.COMPLETED, f"[echo] chaos {id}")
        record.created_at.CopyFrom(Timestamp(seconds=int(created), nanos=int(created % 1 * 1e9)))
        record.started_at.CopyFrom(Timestamp(seconds=int(started), nanos=int(started % 1 * 1e9)))
        return record

    row = "created -> started p50 / worst, no fault in between"
    # The fault of result() spans 1.0-2.5 (wall_offset 0): an execution across it may wait.
    across = timed("aex-1", 0.5, 12.0)
    calm = judge(result(attempts=[], agents=[across, timed("aex-2", 100.0, 100.05)]), persisted=True)
    assert row not in calm.violations, calm.table()
    lost_task = judge(result(attempts=[], agents=[timed("aex-3", 100.0, 110.3)]), persisted=True)
    assert lost_task.violations[row] == ["aex-3: 10.30 s"], lost_task.table()
