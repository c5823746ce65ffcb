"""Chaos soak harness: a seeded fault schedule, the injector that plays it, and the soak run.

The rig is real processes: a stigmer server (`stigmer server start`), a Temporal dev server and,
between them, a TcpProxy. While load clients (load.py) create, cancel and delete executions, the injector plays
the schedule: each fault is injected, held, repaired, and followed by a wait until a create
succeeds again (the recovery time users see), then a healthy gap. Checkpoints pause the load,
wait until every execution is terminal and read the server process (procstats.py): a few
faults after the stigmer SIGKILL (the baseline of the restarted process) and at the end. At the
end, Temporal's own list of workflows (temporal_runs.py) is read too, to count them against the
records.
"""

from __future__ import annotations

import dataclasses
import enum
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from stigmer.api import status_pb2
from stigmer.testing.eventually import wait_until
from stigmer.testing.server import StigmerServerProcess
from stigmer.testing.temporal import TemporalDevServer
from tests.chaos.load import Api, Attempt, Kind, Ledger, LoadClient, Op, create, new_request_id
from tests.chaos.procstats import ProcStats, resource_problems
from tests.chaos.temporal_runs import Run, temporal_runs
from tests.support.tcp_proxy import TcpProxy

WORKFLOW_DOCUMENT = Path(__file__).resolve().parents[2] / "examples" / "hello-workflow.json"
WORKFLOW_NAME = "hello-workflow"
CLIENTS = 8
#: Reconnection cycles a restarted stigmer server goes through before the leak check's baseline.
WARM_UP_FAULTS = 3
#: Repaired faults must be over within this: a create succeeds again (else it is a finding).
RECOVERY_TIMEOUT = 60.0
#: Everything that got an id must be terminal within this once the load pauses.
SETTLE_TIMEOUT = 90.0
#: Old workers finish retiring within ~10 s under load (measured).
RESOURCE_SETTLE_TIMEOUT = 25.0
#: A paused client finishes what it is doing first: a create and its retries (30 s of them at
#: most), a cancel, a delete with force (which the server gives 30 s): a bound, not a wait.
CALL_TIMEOUT_MARGIN = 60.0


class FaultKind(enum.Enum):
    TEMPORAL_SIGKILL = "Temporal SIGKILL"
    TEMPORAL_SIGTERM = "Temporal SIGTERM"
    PROXY_BLACKHOLE = "proxy black hole"
    PROXY_REFUSE = "proxy refuse"
    STIGMER_SIGKILL = "stigmer SIGKILL"


RANDOM_KINDS = (
    FaultKind.TEMPORAL_SIGKILL,
    FaultKind.TEMPORAL_SIGTERM,
    FaultKind.PROXY_BLACKHOLE,
    FaultKind.PROXY_REFUSE,
)


@dataclass(frozen=True, kw_only=True)
class Fault:
    index: int
    kind: FaultKind
    hold: float  # seconds between injection and repair
    gap: float  # healthy seconds after recovery, before the next fault


def make_schedule(*, seed: int, count: int) -> list[Fault]:
    """`count` faults; exactly one stigmer SIGKILL, in the first third, so that the restarted
    process lives through most reconnection cycles and its leak check covers them."""
    if count < 3:
        raise ValueError(f"a schedule needs at least 3 faults, got {count}")
    rng = random.Random(seed)
    stigmer_at = rng.randrange(1, max(2, count // 3))
    faults = []
    for index in range(count):
        kind = FaultKind.STIGMER_SIGKILL if index == stigmer_at else rng.choice(RANDOM_KINDS)
        # Holds straddle the 3 s it takes to notice a black hole (1 s tick + 2 s check timeout):
        # some faults are over before the health check sees them, only requests do. Gaps give
        # the load healthy time between outages; with gaps of 0.2-1 s (an outage every ~3 s) a
        # running agent lost all 3 of its attempts to faults now and then (see the report).
        faults.append(
            Fault(index=index, kind=kind, hold=round(rng.uniform(0.3, 3.0), 2), gap=round(rng.uniform(0.8, 3.0), 2))
        )
    return faults


def baseline_index(schedule: list[Fault]) -> int:
    """After which fault the leak check takes its baseline; -1: before the first one."""
    kills = [f.index for f in schedule if f.kind is FaultKind.STIGMER_SIGKILL]
    if not kills:
        return -1
    return min(kills[-1] + WARM_UP_FAULTS, len(schedule) - 2)


@dataclass
class FaultRecord:
    fault: Fault
    injected_at: float = 0.0
    repaired_at: float = 0.0
    recovered_at: float = 0.0
    log_offset: int = 0  # server log length when the fault was injected
    probes: int = 0  # creates tried before one succeeded
    transitions: list[str] = field(default_factory=list)  # the server's state changes it caused
    stats: ProcStats | None = None  # the server process right after recovery

    @property
    def recovery(self) -> float:
        return self.recovered_at - self.repaired_at


@dataclass
class Checkpoint:
    name: str
    pid: int
    stats: ProcStats
    settled_in: float  # load paused -> every execution terminal
    resources_in: float = 0.0  # then -> fds and threads back to the baseline (or the bound ran out)
    stragglers: list[str] = field(default_factory=list)  # the last executions to become terminal


@dataclass
class SoakResult:
    mode: str
    seed: int
    faults: list[FaultRecord]
    attempts: list[Attempt]
    checkpoints: list[Checkpoint]
    stigmer_down: list[tuple[float, float]]  # (killed, answering again), monotonic
    final_status: object
    agent_executions: list  # type: ignore[type-arg]
    workflow_executions: list  # type: ignore[type-arg]
    log: str
    wall: float
    client_errors: list[str]
    #: time.time() - time.monotonic() during the run: puts the faults on the records' wall clock.
    wall_offset: float = 0.0
    ops: list[Op] = field(default_factory=list)  # the cancels and deletes
    #: Temporal's runs of the agent and workflow execution workflows at the end, by workflow id.
    temporal_runs: dict[str, list[Run]] = field(default_factory=dict)


class Soak:
    """Plays one schedule against one rig; `run()` returns everything the report needs."""

    def __init__(
        self,
        *,
        mode: str,
        seed: int,
        schedule: list[Fault],
        temporal: TemporalDevServer,
        proxy: TcpProxy,
        stigmer: StigmerServerProcess,
    ) -> None:
        self.mode, self.seed, self.schedule = mode, seed, schedule
        self.temporal, self.proxy, self.stigmer = temporal, proxy, stigmer
        self.ledger = Ledger()
        self.checkpoints: list[Checkpoint] = []
        self.records: list[FaultRecord] = []
        self.stigmer_down: list[tuple[float, float]] = []
        self._rng = random.Random(seed)
        self._probe_count = 0
        self._last_seq = 0
        self._stop = threading.Event()  # ends holds and gaps early when the run is aborted
        self._clients: list[LoadClient] = []

    def run(self) -> SoakResult:
        started = time.monotonic()
        self._api = Api(self.stigmer.address)
        try:
            self._wait_connected()
            self._api.register_workflow(WORKFLOW_DOCUMENT.read_text())
            self._clients = [
                LoadClient(
                    name=f"{self.mode}-c{n}",
                    address=self.stigmer.address,
                    workflow=WORKFLOW_NAME,
                    ledger=self.ledger,
                    seed=self.seed * 100 + n,
                )
                for n in range(CLIENTS)
            ]
            for client in self._clients:
                client.start()
            # The load is under way before the first fault.
            wait_until(
                lambda: sum(a.code == "OK" for a in self.ledger.snapshot()) >= 2 * CLIENTS,
                timeout=30,
                what="a warm-up of successful creates",
            )
            # The leak check compares the process at the end with itself a few faults after the
            # stigmer SIGKILL (early in the schedule): warm by then (a fresh process's thread
            # pools grow to their high-water marks under load and stay there), and most
            # reconnection cycles are still to come.
            at = baseline_index(self.schedule)
            baseline = self.checkpoint("baseline") if at < 0 else None
            for fault in self.schedule:
                self.records.append(self._play(fault))
                if fault.index == at:
                    baseline = self.checkpoint(f"baseline (after fault {at})")
            self.checkpoint("final", baseline=baseline)
            runs = temporal_runs(self.temporal.address)
        finally:
            self._stop.set()
            for client in self._clients:
                client.stop()
            for client in self._clients:
                client.join(timeout=CALL_TIMEOUT_MARGIN)
        result = SoakResult(
            mode=self.mode,
            seed=self.seed,
            faults=self.records,
            attempts=self.ledger.snapshot(),
            checkpoints=self.checkpoints,
            stigmer_down=self.stigmer_down,
            final_status=self._api.get_status(),
            agent_executions=self._api.all_agent_executions(),
            workflow_executions=self._api.all_workflow_executions(),
            log=self.stigmer.log(),
            wall=time.monotonic() - started,
            client_errors=[f"{c.client_name}: {c.error!r}" for c in self._clients if c.error is not None],
            wall_offset=time.time() - time.monotonic(),
            ops=self.ledger.ops_snapshot(),
            temporal_runs=runs,
        )
        self._api.close()
        return result

    # -- faults --------------------------------------------------------------------------------

    def _play(self, fault: Fault) -> FaultRecord:
        record = FaultRecord(fault=fault, log_offset=len(self.stigmer.log()))
        record.injected_at = time.monotonic()
        self._inject(fault.kind)
        self._stop.wait(fault.hold)  # the fault's duration: a schedule value, not a condition
        self._repair(fault.kind)
        record.repaired_at = time.monotonic()
        record.probes = self._wait_recovered()
        record.recovered_at = time.monotonic()
        record.transitions = self._new_transitions()
        assert self.stigmer.proc is not None
        record.stats = ProcStats.read(self.stigmer.proc.pid)
        self._stop.wait(fault.gap)
        return record

    def _inject(self, kind: FaultKind) -> None:
        if kind is FaultKind.TEMPORAL_SIGKILL:
            self.temporal.kill(signal.SIGKILL)
        elif kind is FaultKind.TEMPORAL_SIGTERM:
            self.temporal.kill(signal.SIGTERM)
        elif kind is FaultKind.PROXY_BLACKHOLE:
            self.proxy.blackhole()
        elif kind is FaultKind.PROXY_REFUSE:
            self.proxy.refuse()
        else:
            self.stigmer_down.append((time.monotonic(), float("inf")))
            self.stigmer.kill()

    def _repair(self, kind: FaultKind) -> None:
        if kind in (FaultKind.TEMPORAL_SIGKILL, FaultKind.TEMPORAL_SIGTERM):
            self.temporal.restart()  # same ports, same db file (if any)
            self.temporal.wait_ready()
        elif kind in (FaultKind.PROXY_BLACKHOLE, FaultKind.PROXY_REFUSE):
            self.proxy.forward()
        else:
            self.stigmer.start()  # same data dir
            # start() looks for its readiness line in the whole (appended) log, which the killed
            # process already wrote: wait for the new process to answer instead.
            wait_until(self._answers, timeout=20, what="the restarted stigmer server to answer")
            killed, _ = self.stigmer_down[-1]
            self.stigmer_down[-1] = (killed, time.monotonic())
            self._last_seq = 0  # a new process numbers its transitions from 1 again

    def _answers(self) -> bool:
        try:
            self._api.get_status(timeout=1.0)
        except grpc.RpcError:
            return False
        return True

    def _wait_recovered(self) -> int:
        """Create until one succeeds; returns how many tries it took. The probes are load too."""
        tries = 0

        def created() -> bool:
            nonlocal tries
            tries += 1
            self._probe_count += 1
            tag = f"{self.mode}-probe-{self._probe_count}"
            attempt = Attempt("probe", Kind.AGENT, tag, time.monotonic(), request_id=new_request_id(self._rng))
            self.ledger.add(create(self._api, attempt, workflow=WORKFLOW_NAME, rng=self._rng))
            return attempt.code == "OK"

        wait_until(created, timeout=RECOVERY_TIMEOUT, interval=0.1, what="a create to succeed after the repair")
        return tries

    def _new_transitions(self) -> list[str]:
        status = self._api.get_status()
        fresh = [t for t in status.recent_transitions if t.seq > self._last_seq]
        if status.recent_transitions:
            self._last_seq = max(t.seq for t in status.recent_transitions)
        return [t.dest for t in fresh]

    def _wait_connected(self) -> None:
        def connected() -> bool:
            try:
                return self._api.get_status(timeout=1.0).state == "CONNECTED"
            except grpc.RpcError:
                return False

        wait_until(connected, timeout=30, what="the stigmer server to be CONNECTED")

    # -- checkpoints ---------------------------------------------------------------------------

    def _stats(self, pid: int) -> ProcStats:
        """/proc's view of the server plus its own count of asyncio tasks (GetStatus)."""
        return _with_tasks(ProcStats.read(pid), self._api.get_status(timeout=5.0))

    def checkpoint(self, name: str, *, baseline: Checkpoint | None = None) -> Checkpoint:
        """Pause the load, wait until nothing is unfinished, read the process; resume.

        With a `baseline` (of the same process), wait a bounded time for fds and threads to come
        back to it: idle runtime threads exit after a keep-alive, old workers finish retiring.
        """
        began = time.monotonic()
        for client in self._clients:
            client.pause()
        try:
            for client in self._clients:
                wait_until(client.idle.is_set, timeout=CALL_TIMEOUT_MARGIN, what=f"{client.client_name} to pause")
            stragglers: list[str] = []

            def settled_all() -> bool:
                unfinished = self._api.unfinished()
                if unfinished:
                    stragglers[:] = unfinished  # the last ones seen: the report names them
                return not unfinished

            wait_until(
                settled_all, timeout=SETTLE_TIMEOUT, interval=0.2, what=f"every execution to be terminal ({name})"
            )
            settled = time.monotonic() - began
            assert self.stigmer.proc is not None
            pid = self.stigmer.proc.pid
            stats = self._stats(pid)
            if baseline is not None:
                try:
                    stats = wait_until(
                        lambda: _back_to(baseline.stats, self._stats(pid)),
                        timeout=RESOURCE_SETTLE_TIMEOUT,
                        interval=0.5,
                        what="fds, threads and asyncio tasks to come back to the baseline",
                    )
                except AssertionError:  # not a crash: the report judges it, with the figures
                    stats = self._stats(pid)
            point = Checkpoint(
                name=name,
                pid=pid,
                stats=stats,
                settled_in=settled,
                resources_in=time.monotonic() - began - settled,
                stragglers=stragglers[:5],
            )
            self.checkpoints.append(point)
            return point
        finally:
            if name != "final":
                for client in self._clients:
                    client.resume()


def _with_tasks(stats: ProcStats, status: status_pb2.ServerStatus) -> ProcStats:
    return dataclasses.replace(stats, tasks=status.process.asyncio_tasks)


def _back_to(base: ProcStats, now: ProcStats) -> ProcStats | bool:
    return False if resource_problems(base, now) else now
