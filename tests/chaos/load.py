"""Load for the chaos soak: gRPC clients that create executions, and the ledger of every attempt.

Each client is a thread with its own channel (as eight separate users would have), creating agent
executions (plain, slow, deliberately failing) and workflow executions in a seeded random mix.
Every attempt is tagged uniquely (in the agent message, or the workflow input), so that at the
end the store can be searched for it whatever the answer was, including for an UNAVAILABLE that
must have left nothing behind.
"""

from __future__ import annotations

import enum
import json
import random
import threading
import time
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
from stigmer.contract import STATE_KEY
from stigmer.temporal.agents import DELAY_ENV, FAIL_ENV

#: Longer than the slowest legitimate create (3 s fast-path wait + 10 s start deadline): a client
#: that runs out of this is a finding, not load noise.
CALL_TIMEOUT = 20.0
READ_TIMEOUT = 10.0
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
    """One create call and its answer."""

    client: str
    kind: Kind
    tag: str
    started: float  # time.monotonic()
    ended: float = 0.0
    code: str = ""  # "OK" or the grpc status code's name
    details: str = ""
    state: str = ""  # the stigmer-connection-state trailer of an UNAVAILABLE answer
    id: str = ""

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
class Ledger:
    """Every attempt of every client; thread-safe appends."""

    attempts: list[Attempt] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, attempt: Attempt) -> None:
        with self._lock:
            self.attempts.append(attempt)

    def snapshot(self) -> list[Attempt]:
        with self._lock:
            return list(self.attempts)


def create(api: Api, attempt: Attempt, *, workflow: str, rng: random.Random) -> Attempt:
    """Make the create call `attempt` describes and record its answer in it."""
    try:
        if attempt.kind is Kind.WORKFLOW:
            request = workflow_execution_pb2.CreateWorkflowExecutionRequest(
                workflow=workflow, input=attempt.workflow_input
            )
            attempt.id = api.workflow_executions.Create(request, timeout=CALL_TIMEOUT).id
        else:
            env = {}
            if attempt.kind is Kind.SLOW_AGENT:
                env[DELAY_ENV] = f"{rng.uniform(0.5, 3.0):.2f}"
            if attempt.kind is Kind.FAILING_AGENT:
                env[FAIL_ENV] = attempt.fail_reason
            request_aex = agent_execution_pb2.CreateAgentExecutionRequest(
                agent="echo", message=attempt.message, runtime_env=env
            )
            attempt.id = api.agents.Create(request_aex, timeout=CALL_TIMEOUT).id
        attempt.code = "OK"
    except grpc.RpcError as err:
        assert isinstance(err, grpc.Call)
        attempt.code = err.code().name
        attempt.details = err.details() or ""
        attempt.state = dict(err.trailing_metadata() or ()).get(STATE_KEY, "")
    attempt.ended = time.monotonic()
    return attempt


class LoadClient(threading.Thread):
    """Creates executions until stopped; pausable, so that checkpoints see a quiet server."""

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
        #: Set once the client has noticed a pause (never while a create is in flight).
        self.idle = threading.Event()
        self.error: BaseException | None = None

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
                kind = self._rng.choices([k for k, _ in _MIX], weights=[w for _, w in _MIX])[0]
                attempt = Attempt(self.client_name, kind, f"{self.client_name}-{count}", time.monotonic())
                self._ledger.add(create(api, attempt, workflow=self._workflow, rng=self._rng))
                # Think time between a user's requests (not a wait for a condition): it sets the
                # load at about 5 creates/s in all, which 2 cores sustain next to Temporal (at 8/s
                # the executions in flight took up to a minute to drain after the load paused).
                self._interrupt.wait(self._rng.uniform(0.6, 2.4))
        except BaseException as exc:  # surfaced by the soak, never swallowed
            self.error = exc
        finally:
            self.idle.set()
            api.close()

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
