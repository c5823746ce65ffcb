"""Load for the chaos soak: gRPC clients that create, cancel and delete executions, and the ledger
of every call.

Each client is a thread with its own channel (as eight separate users would have), creating agent
executions (plain, slow, deliberately failing) and workflow executions in a seeded random mix.
Every create is tagged uniquely (in the agent message, or the workflow input), so that at the
end the store can be searched for it whatever the answer was, including for an UNAVAILABLE that
must have left nothing behind. Every create carries a request_id, and a create answered
UNAVAILABLE or DEADLINE_EXCEEDED is sent again, the same request with the same id, until it is
answered (each try is an Attempt of its own, all with the create's tag): the server must make one
record of it, whatever happened to the earlier tries.

Meanwhile the clients cancel some of what they created (right after creating it, so that most
cancels find it running; and later, when a fault may be under way) and delete some of it (the
oldest, which has usually finished; now and then the newest, with force). Cancels and deletes
are not retried: their answers are judged (Op), and an UNAVAILABLE cancel promises that nothing
changed.
"""

from __future__ import annotations

import enum
import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from stigmer.api import (
    agent_execution_pb2,
    agent_execution_pb2_grpc,
    common_pb2,
    status_pb2,
    status_pb2_grpc,
    workflow_execution_pb2,
    workflow_execution_pb2_grpc,
    workflow_pb2,
    workflow_pb2_grpc,
)
from stigmer.contract import RETRY_AFTER_KEY, STATE_KEY
from stigmer.temporal import names
from stigmer.temporal.agents import DELAY_ENV, FAIL_ENV

#: Longer than the slowest legitimate create (3 s fast-path wait + 10 s start deadline): a client
#: that runs out of this is a finding, not load noise.
CALL_TIMEOUT = 20.0
READ_TIMEOUT = 10.0
#: Delete with force waits up to 30 s on the server for the cancelled execution to stop.
FORCE_DELETE_TIMEOUT = 40.0
#: Answers after which a create is sent again with the same request_id: it may or may not have landed.
RETRIED_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})
#: A create is tried at most this often, and not retried once this long has passed since its first try.
MAX_TRIES = 40
RETRY_BUDGET = 30.0
#: Between tries a client waits what the server's retry-after says (else 0.5 s, doubling), within
#: these bounds, spread by +/-20 %: eight clients must not hammer a server that just came back.
RETRY_WAIT = (0.4, 2.0)
#: The share of each kind's creates cancelled right after they returned (slow ones are still running).
CANCEL_SHARE = {"agent": 0.05, "slow agent": 0.5, "failing agent": 0.05, "workflow": 0.35}
#: How often a client cancels its newest execution later, whatever state it and the faults are in.
LATE_CANCEL_SHARE = 0.15
#: How often a client deletes one of its executions between creates, and how many of those use force.
DELETE_SHARE = 0.35
FORCE_SHARE = 0.1
#: Deletes without force pick executions at least this old (most have finished by then).
DELETE_AFTER = 4.0
#: A restarted stigmer server is reachable again within ~1 s; grpc's default reconnect backoff
#: (up to 120 s) would leave the clients in TRANSIENT_FAILURE long after that.
CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 1000)]
UNFINISHED = (common_pb2.PENDING, common_pb2.IN_PROGRESS)


class Kind(enum.Enum):
    """What a create asks for, and so what it must end as."""

    AGENT = "agent"  # echo agent, answers at once -> COMPLETED with one reply
    SLOW_AGENT = "slow agent"  # echo agent taking 0.5-3 s -> COMPLETED with one reply
    FAILING_AGENT = "failing agent"  # STIGMER_AGENT_FAIL -> FAILED with exactly that reason
    WORKFLOW = "workflow"  # examples/hello-workflow.json -> COMPLETED

    @property
    def is_agent(self) -> bool:
        return self is not Kind.WORKFLOW


_MIX = ((Kind.AGENT, 50), (Kind.SLOW_AGENT, 15), (Kind.FAILING_AGENT, 15), (Kind.WORKFLOW, 20))


class Api:
    """Stubs on one channel to the stigmer server."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
        self.agents = agent_execution_pb2_grpc.AgentExecutionServiceStub(self.channel)
        self.workflow_executions = workflow_execution_pb2_grpc.WorkflowExecutionServiceStub(self.channel)
        self.workflows = workflow_pb2_grpc.WorkflowServiceStub(self.channel)
        self.status = status_pb2_grpc.StatusServiceStub(self.channel)

    def get_status(self, *, timeout: float = 2.0) -> status_pb2.ServerStatus:
        return self.status.GetStatus(status_pb2.GetStatusRequest(), timeout=timeout)

    def all_agent_executions(self, *, phase: int = 0) -> list[agent_execution_pb2.AgentExecution]:
        return _all_pages(
            lambda token: self.agents.List(
                agent_execution_pb2.ListAgentExecutionsRequest(phase=phase, page_size=1000, page_token=token),
                timeout=READ_TIMEOUT,
            )
        )

    def all_workflow_executions(self, *, phase: int = 0) -> list[workflow_execution_pb2.WorkflowExecution]:
        return _all_pages(
            lambda token: self.workflow_executions.List(
                workflow_execution_pb2.ListWorkflowExecutionsRequest(phase=phase, page_size=1000, page_token=token),
                timeout=READ_TIMEOUT,
            )
        )

    def unfinished(self) -> list[str]:
        """Ids of every execution (of both kinds, steps included) in PENDING or IN_PROGRESS."""
        ids = [e.id for phase in UNFINISHED for e in self.all_agent_executions(phase=phase)]
        return ids + [e.id for phase in UNFINISHED for e in self.all_workflow_executions(phase=phase)]

    def cancel(self, kind: Kind, id: str, *, reason: str, requested_by: str) -> Any:
        if kind is Kind.WORKFLOW:
            request = workflow_execution_pb2.CancelWorkflowExecutionRequest(
                id=id, reason=reason, requested_by=requested_by
            )
            return self.workflow_executions.Cancel(request, timeout=CALL_TIMEOUT)
        return self.agents.Cancel(
            agent_execution_pb2.CancelAgentExecutionRequest(id=id, reason=reason, requested_by=requested_by),
            timeout=CALL_TIMEOUT,
        )

    def delete(self, kind: Kind, id: str, *, force: bool) -> Any:
        timeout = FORCE_DELETE_TIMEOUT if force else CALL_TIMEOUT
        if kind is Kind.WORKFLOW:
            return self.workflow_executions.Delete(
                workflow_execution_pb2.DeleteWorkflowExecutionRequest(id=id, force=force), timeout=timeout
            )
        return self.agents.Delete(agent_execution_pb2.DeleteAgentExecutionRequest(id=id, force=force), timeout=timeout)

    def register_workflow(self, document: str) -> workflow_pb2.Workflow:
        return self.workflows.Create(workflow_pb2.CreateWorkflowRequest(document=document), timeout=CALL_TIMEOUT)

    def close(self) -> None:
        self.channel.close()


def _all_pages(fetch: Callable[[str], Any]) -> list[Any]:
    """Every item of a List RPC (both List responses carry `executions`), page by page."""
    items: list[Any] = []
    token = ""
    while True:
        page = fetch(token)
        items.extend(page.executions)
        token = page.next_page_token
        if not token:
            return items


@dataclass
class Attempt:
    """One create call and its answer (one try of a create: its retries share its tag and request_id)."""

    client: str
    kind: Kind
    tag: str
    started: float  # time.monotonic()
    ended: float = 0.0
    code: str = ""  # "OK" or the grpc status code's name
    details: str = ""
    state: str = ""  # the stigmer-connection-state trailer of an UNAVAILABLE answer
    retry_after: float = 0.0  # the retry-after trailer of an UNAVAILABLE answer (seconds)
    id: str = ""
    request_id: str = ""
    try_no: int = 0  # 0: the first try of its create
    delay: str = ""  # a slow agent's delay, drawn once per create (a retry must send the same body)
    wall_started: float = 0.0  # time.time(), comparable with the records' timestamps
    wall_ended: float = 0.0
    created_at: float = 0.0  # the record's, from an OK answer

    @property
    def message(self) -> str:
        return f"chaos {self.tag}"

    @property
    def fail_reason(self) -> str:
        return f"deliberate failure of {self.tag}"

    @property
    def workflow_input(self) -> str:
        return json.dumps({"user": self.tag})

    @property
    def server_unavailable(self) -> bool:
        """UNAVAILABLE answered by the stigmer server itself (it sends the connection state along);
        without the trailer the channel could not reach the server process at all."""
        return self.code == "UNAVAILABLE" and bool(self.state)


@dataclass
class Op:
    """One cancel or delete call and its answer."""

    client: str
    action: str  # "cancel", "delete" or "force delete"
    kind: Kind
    target: str  # the execution's id
    started: float  # time.monotonic()
    reason: str = ""  # a cancel's
    requested_by: str = ""
    ended: float = 0.0
    code: str = ""
    details: str = ""
    state: str = ""
    phase: int = 0  # of the execution in an OK answer
    cancel_requested: bool = False  # an OK answer has cancel_requested_at
    step_ids: tuple[str, ...] = ()  # a deleted workflow execution's agent steps (deleted with it)

    @property
    def server_unavailable(self) -> bool:
        return self.code == "UNAVAILABLE" and bool(self.state)

    @property
    def unknown(self) -> bool:
        """No answer from the server itself: the call may or may not have landed."""
        return (self.code == "UNAVAILABLE" and not self.state) or self.code == "DEADLINE_EXCEEDED"


@dataclass
class Ledger:
    """Every attempt and op of every client; thread-safe appends."""

    attempts: list[Attempt] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, attempt: Attempt) -> None:
        with self._lock:
            self.attempts.append(attempt)

    def add_op(self, op: Op) -> None:
        with self._lock:
            self.ops.append(op)

    def snapshot(self) -> list[Attempt]:
        with self._lock:
            return list(self.attempts)

    def ops_snapshot(self) -> list[Op]:
        with self._lock:
            return list(self.ops)


def new_request_id(rng: random.Random) -> str:
    """A UUID4 from the seeded generator: the same schedule sends the same ids."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def create(api: Api, attempt: Attempt, *, workflow: str, rng: random.Random) -> Attempt:
    """Make the create call `attempt` describes and record its answer in it."""
    attempt.wall_started = time.time()
    try:
        if attempt.kind is Kind.WORKFLOW:
            request = workflow_execution_pb2.CreateWorkflowExecutionRequest(
                workflow=workflow, input=attempt.workflow_input, request_id=attempt.request_id
            )
            reply: Any = api.workflow_executions.Create(request, timeout=CALL_TIMEOUT)
        else:
            env = {}
            if attempt.kind is Kind.SLOW_AGENT:
                attempt.delay = attempt.delay or f"{rng.uniform(0.5, 3.0):.2f}"
                env[DELAY_ENV] = attempt.delay
            if attempt.kind is Kind.FAILING_AGENT:
                env[FAIL_ENV] = attempt.fail_reason
            request_aex = agent_execution_pb2.CreateAgentExecutionRequest(
                agent="echo", message=attempt.message, runtime_env=env, request_id=attempt.request_id
            )
            reply = api.agents.Create(request_aex, timeout=CALL_TIMEOUT)
        attempt.id = reply.id
        attempt.created_at = reply.created_at.ToNanoseconds() / 1e9
        attempt.code = "OK"
    except grpc.RpcError as err:
        _failed(attempt, err)
    attempt.ended = time.monotonic()
    attempt.wall_ended = time.time()
    return attempt


def run_op(api: Api, op: Op) -> Op:
    """Make the cancel or delete call `op` describes and record its answer in it."""
    try:
        if op.action == "cancel":
            reply = api.cancel(op.kind, op.target, reason=op.reason, requested_by=op.requested_by)
        else:
            reply = api.delete(op.kind, op.target, force=op.action == "force delete")
            if op.kind is Kind.WORKFLOW:
                op.step_ids = tuple(
                    names.step_agent_execution_id(op.target, t.name) for t in reply.tasks if t.kind == "agent"
                )
        op.phase = reply.phase
        op.cancel_requested = reply.HasField("cancel_requested_at")
        op.code = "OK"
    except grpc.RpcError as err:
        _failed(op, err)
    op.ended = time.monotonic()
    return op


def _failed(call: Attempt | Op, err: grpc.RpcError) -> None:
    assert isinstance(err, grpc.Call)
    call.code = err.code().name
    call.details = err.details() or ""
    trailers = dict(err.trailing_metadata() or ())
    call.state = trailers.get(STATE_KEY, "")
    if isinstance(call, Attempt):
        try:
            call.retry_after = float(trailers.get(RETRY_AFTER_KEY, 0) or 0)
        except ValueError:
            call.retry_after = 0.0


class LoadClient(threading.Thread):
    """Creates executions until stopped, cancelling and deleting some; pausable, so that checkpoints
    see a quiet server."""

    def __init__(self, *, name: str, address: str, workflow: str, ledger: Ledger, seed: int) -> None:
        super().__init__(name=f"chaos-{name}", daemon=True)
        self.client_name = name
        self._address = address
        self._workflow = workflow
        self._ledger = ledger
        self._rng = random.Random(seed)
        self._stop_requested = threading.Event()
        self._go = threading.Event()  # cleared while paused
        self._go.set()
        self._interrupt = threading.Event()  # cuts the think time short on pause and stop
        #: Set once the client has noticed a pause (never while a call is in flight).
        self.idle = threading.Event()
        self.error: BaseException | None = None
        self._mine: list[tuple[float, Kind, str]] = []  # (created, kind, id) it may delete, oldest first

    def run(self) -> None:
        api = Api(self._address)
        try:
            count = 0
            while not self._stop_requested.is_set():
                if not self._go.is_set():
                    self.idle.set()
                    self._go.wait(0.1)
                    continue
                count += 1
                if self._mine and self._rng.random() < LATE_CANCEL_SHARE:
                    _, kind, id = self._mine[-1]
                    self._op(api, "cancel", kind, id)
                self._maybe_delete(api)
                kind = self._rng.choices([k for k, _ in _MIX], weights=[w for _, w in _MIX])[0]
                created = self._create(api, kind, f"{self.client_name}-{count}")
                if created.code == "OK":
                    if self._rng.random() < CANCEL_SHARE[kind.value]:
                        self._op(api, "cancel", kind, created.id)
                    self._mine.append((time.monotonic(), kind, created.id))
                # Think time between a user's requests (not a wait for a condition): it sets the
                # load at about 5 creates/s in all, which 2 cores sustain next to Temporal (at 8/s
                # the executions in flight took up to a minute to drain after the load paused).
                self._interrupt.wait(self._rng.uniform(0.6, 2.4))
        except BaseException as exc:  # surfaced by the soak, never swallowed
            self.error = exc
        finally:
            self.idle.set()
            api.close()

    def _create(self, api: Api, kind: Kind, tag: str) -> Attempt:
        """One create, sent again with the same request_id while its answer says it may not have landed."""
        request_id = new_request_id(self._rng)
        first = time.monotonic()
        delay = ""
        for try_no in range(MAX_TRIES):
            attempt = Attempt(
                self.client_name, kind, tag, time.monotonic(), request_id=request_id, try_no=try_no, delay=delay
            )
            self._ledger.add(create(api, attempt, workflow=self._workflow, rng=self._rng))
            delay = attempt.delay
            if attempt.code not in RETRIED_CODES or time.monotonic() - first > RETRY_BUDGET:
                break
            low, high = RETRY_WAIT
            wait = min(high, max(low, attempt.retry_after or 0.5 * 2**try_no))
            # A client's pause between tries (not a wait for a condition); only a stop cuts it short.
            if self._stop_requested.wait(wait * self._rng.uniform(0.8, 1.2)):
                break
        return attempt

    def _maybe_delete(self, api: Api) -> None:
        if not self._mine or self._rng.random() >= DELETE_SHARE:
            return
        if self._rng.random() < FORCE_SHARE:
            _, kind, id = self._mine.pop()  # the newest: probably still running
            self._op(api, "force delete", kind, id)
            return
        created, kind, id = self._mine[0]
        if time.monotonic() - created < DELETE_AFTER:
            return
        self._mine.pop(0)
        if self._op(api, "delete", kind, id).code == "FAILED_PRECONDITION":  # not finished yet: later
            self._mine.append((created, kind, id))

    def _op(self, api: Api, action: str, kind: Kind, id: str) -> Op:
        op = Op(self.client_name, action, kind, id, time.monotonic())
        if action == "cancel":
            op.reason, op.requested_by = f"chaos cancel of {id}", self.client_name
        self._ledger.add_op(run_op(api, op))
        return op

    def pause(self) -> None:
        self._go.clear()
        self._interrupt.set()

    def resume(self) -> None:
        # idle is cleared here, not in the loop: a client that has not yet seen the pause must
        # never look idle.
        self.idle.clear()
        self._interrupt.clear()
        self._go.set()

    def stop(self) -> None:
        self._stop_requested.set()
        self._interrupt.set()
        self._go.set()
