"""TemporalConnection: the lifecycle machine, its loops, and its effects bound to the temporalio SDK.

It owns the machine and the loops that drive it (retry timer, health ticker, health probe,
comeback probe) and builds fresh workers and creators for every verified client. The log lines
users grep for come from the machine's transition record (stigmer.temporal.log_contract).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

from loguru import logger
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.service import KeepAliveConfig, RetryConfig, RPCError, RPCStatusCode
from temporalio.worker import Worker

from statemachine import Clock, ConnectionLifecycle, State, Supervisor, TransitionEvent, describe
from stigmer.store import Store
from stigmer.temporal.agents import AgentRunner
from stigmer.temporal.creators import AgentExecutionCreator, WorkflowExecutionCreator, WorkflowValidator
from stigmer.temporal.diagnose import NamespaceMissing, diagnose, diagnose_dial
from stigmer.temporal.log_contract import TransitionLog
from stigmer.temporal.loop_thread import LoopThread
from stigmer.temporal.probe import COMEBACK, LIVENESS, ComebackProbe, TemporalProbe
from stigmer.temporal.session import TemporalSession
from stigmer.temporal.status import ConnectionStatus
from stigmer.temporal.wire import accepts
from stigmer.temporal.workers import build_workers

from . import running
from .clients import ClientReaper, CreatorTargets, TemporalClients, process_runtime
from .settings import ConnectionSettings

Connect = Callable[..., Awaitable[Client]]
BuildWorkers = Callable[..., list[Worker]]


class TemporalConnection:
    """Keeps a Temporal client, three workers and the creators alive while Temporal allows."""

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        store: Store,
        runner: AgentRunner,
        targets: CreatorTargets | None = None,
        clock: Clock | None = None,
        runtime: Runtime | None = None,
        connect: Connect | None = None,
        workers_factory: BuildWorkers = build_workers,
        on_connected: Callable[[TemporalSession], Awaitable[object]] | None = None,
    ) -> None:
        self.settings = settings
        self._store = store
        self._runner = runner
        self._targets = targets or CreatorTargets.nowhere()
        self._started = False
        self._runtime = runtime
        self._connect: Connect = connect or Client.connect
        self._build_workers = workers_factory
        self._workers: list[Worker] = []
        self._worker_tasks: list[asyncio.Task[None]] = []
        self._retiring: set[asyncio.Task[None]] = set()
        self._reports: set[asyncio.Task[bool]] = set()
        self.reaper = ClientReaper()
        self._closing = False
        self._on_connected = on_connected
        self._hooks: set[asyncio.Task[object]] = set()
        # The workers run on an event loop of their own thread (stigmer.temporal.loop_thread), so
        # that executing workflows does not delay the API's requests on this one.
        self._workers_loop = LoopThread("stigmer-workers")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._creators: tuple[AgentExecutionCreator | WorkflowExecutionCreator | WorkflowValidator, ...] = ()
        self._health_probe = TemporalProbe(settings.host_port, security=settings.security, namespace=settings.namespace)
        self.comeback = ComebackProbe(
            settings.host_port,
            port_open=functools.partial(accepts, settings.host, settings.port),
            security=settings.security,
            namespace=settings.namespace,
            clock=clock.monotonic if clock is not None else time.monotonic,
        )
        self.lifecycle: ConnectionLifecycle[TemporalClients] = ConnectionLifecycle(
            self,
            backoff=settings.backoff,
            clock=clock,
            attempt_timeout=settings.dial_timeout + settings.verify_timeout + 1.0,
        )
        self.supervisor: Supervisor[TemporalClients] = Supervisor(
            self.lifecycle,
            check=self._check,
            health_interval=settings.health_interval,
            check_timeout=settings.health_timeout,
            clock=clock,
            probe=self.comeback if settings.probe else None,
            probe_interval=settings.probe_interval,
            probe_slow_interval=settings.probe_slow_interval,
            probe_fast_for=settings.probe_fast_for,
            liveness=self._liveness if settings.liveness else None,
            liveness_interval=settings.liveness_interval,
            liveness_timeout=settings.liveness_timeout + 1.0,
        )
        self.comeback.on_verdict = self.supervisor.probe_has_news
        self.transition_log = TransitionLog(
            host_port=settings.host_port, namespace=settings.namespace, generation=lambda: self.lifecycle.generation
        )
        self.lifecycle.events.subscribe(self.transition_log)
        self.lifecycle.events.subscribe(self._run_connected_hook)

    # ------------------------------------------------------------------ service API

    def send_creators_to(self, targets: CreatorTargets) -> None:
        """Where creators go while CONNECTED (the controllers' setters). Before start() only."""
        self._refuse_once_started("send_creators_to")
        self._targets = targets

    def session(self) -> TemporalSession | None:
        """A session on the current connection while CONNECTED (for background work), else None."""
        clients = self.lifecycle.client
        if clients is None or not self.is_connected():
            return None
        return TemporalSession(clients.workers, queues=self.settings.queues)

    def when_connected(self, hook: Callable[[TemporalSession], Awaitable[object]]) -> None:
        """Run ``hook`` (the reconciler) in the background on every entry to CONNECTED. Before start() only."""
        self._refuse_once_started("when_connected")
        self._on_connected = hook

    def observe_probes(self, fn: Callable[[str, bool], None]) -> None:
        """``fn(probe, answered)`` after each health question: probe is LIVENESS (while CONNECTED)
        or COMEBACK (while not; one per RPC, not per TCP hint). Before start() only."""
        self._refuse_once_started("observe_probes")
        self._health_probe.on_result = functools.partial(fn, LIVENESS)
        self.comeback.on_result = functools.partial(fn, COMEBACK)

    def workers_by_queue(self) -> dict[str, bool]:
        """Each worker's task queue -> whether it runs now (only while CONNECTED); from any thread."""
        return running.by_queue(self._workers, self.settings.queues, self.settings.workers)

    async def __aenter__(self) -> TemporalConnection:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Begin connecting in the background; returns at once. Once per connection."""
        self._refuse_once_started("start")
        self._started = True
        if self._runtime is None:
            self._runtime = process_runtime()
        self._loop = asyncio.get_running_loop()
        self._workers_loop.start()
        logger.info(
            "Starting Temporal health monitor",
            interval=self.settings.health_interval,
            host_port=self.settings.host_port,
            namespace=self.settings.namespace,
            security=self.settings.security.describe(),
        )
        self.supervisor.start()

    async def close(self) -> None:
        """Stop loops, workers, client; bounded. Safe to call twice."""
        self._closing = True
        await self.supervisor.close()
        self.reaper.close()
        for task in [*self._reports, *self._hooks]:
            task.cancel()
        if self._hooks:
            await asyncio.wait(set(self._hooks), timeout=2.0)
        if self._retiring:
            _, late = await asyncio.wait(set(self._retiring), timeout=self.settings.worker_shutdown_timeout + 2)
            for task in late:  # shutting down: bounded beats clean here
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=2.0)
        await self._workers_loop.close()
        await self._health_probe.close()
        await self.comeback.close()

    def is_connected(self) -> bool:
        return self.lifecycle.is_connected()

    def _refuse_once_started(self, what: str) -> None:
        if self._closing:
            raise RuntimeError(f"TemporalConnection.{what}(): the connection is closed; make a new one")
        if self._started:
            raise RuntimeError(f"TemporalConnection.{what}(): the connection is already started")

    def status(self) -> ConnectionStatus:
        snapshot = self.lifecycle.snapshot()
        return ConnectionStatus(
            snapshot=snapshot,
            # Workers run exactly while CONNECTED (the lifecycle's invariant).
            workers_running=len(self.settings.workers) if snapshot.connected else 0,
            host_port=self.settings.host_port,
            namespace=self.settings.namespace,
        )

    async def wait_available(self) -> bool:
        """For a request that found no creator: one fast attempt, bounded wait. True if CONNECTED."""
        if self.lifecycle.is_connected():
            return True
        if not self.settings.fast_path:
            return False
        return await self.supervisor.request_attempt(wait=self.settings.fast_path_wait)

    def unavailable_details(self) -> tuple[str, float]:
        """(state name, seconds until the next scheduled attempt) for an UNAVAILABLE answer."""
        snapshot = self.lifecycle.snapshot()
        retry_in = snapshot.next_retry_in
        return snapshot.state.name, 1.0 if retry_in is None else max(1.0, retry_in)

    def report_unavailable(self, error: BaseException | str, *, client: object | None = None) -> None:
        """A request saw Temporal unavailable: mark the connection unhealthy now, not at the next tick.

        ``client`` is the client the failing call used; a report about a connection that has
        already been replaced is dropped.
        """
        cause = f"request failed: {error if isinstance(error, str) else describe(error)}"
        if client is None or isinstance(client, TemporalClients):
            self._spawn_report(cause, client)
            return
        current = self.lifecycle.client
        if current is not None and client in current:
            self._spawn_report(cause, current)

    # ------------------------------------------------------------------ effects

    async def dial(self) -> TemporalClients:
        try:
            return await asyncio.wait_for(self._dial(), timeout=self.settings.dial_timeout)
        except asyncio.CancelledError:  # a superseded attempt: a client it made is dropped
            self.reaper.soon()
            raise
        except Exception as err:
            raise await diagnose_dial(err, self.settings.host_port, tls=self.settings.security.uses_tls) from err

    async def _dial(self) -> TemporalClients:
        """Both connections at once; if one fails, the other is abandoned."""
        retry = self.settings.api_retry
        if retry is None:
            client = await self._connect_one(None)
            return TemporalClients(workers=client, api=client)
        tasks = [asyncio.ensure_future(self._connect_one(None)), asyncio.ensure_future(self._connect_one(retry))]
        try:
            workers, api = await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
        return TemporalClients(workers=workers, api=api)

    def _connect_one(self, retry: RetryConfig | None) -> Awaitable[Client]:
        return self._connect(
            self.settings.host_port,
            namespace=self.settings.namespace,
            runtime=self._runtime,
            connect_timeout=timedelta(seconds=self.settings.dial_timeout),
            # The SDK's: 30 s, within what the frontend allows (see ConnectionSettings.liveness).
            keep_alive_config=KeepAliveConfig.default,
            **({} if retry is None else {"retry_config": retry}),
            **self.settings.security.connect_kwargs(),
        )

    async def verify(self, clients: TemporalClients) -> None:
        await self._describe_namespace(clients, self.settings.verify_timeout)

    async def _describe_namespace(self, clients: TemporalClients, timeout: float) -> None:  # noqa: ASYNC109
        """Does Temporal answer for our namespace (the dial's verification, and the health check)?"""
        try:
            await clients.api.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=self.settings.namespace), timeout=timedelta(seconds=timeout)
            )
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise NamespaceMissing(self.settings.namespace, self.settings.host_port) from err
            raise diagnose(err, self.settings.host_port) from err

    async def start_workers(self, clients: TemporalClients) -> None:
        # Cancelling this call (a shutdown mid-attempt) cancels the start there too.
        await self._workers_loop.run(self._start_workers(clients))

    async def _start_workers(self, clients: TemporalClients) -> None:
        # On the workers' loop: the workers, their run() tasks and the wait for them live there.
        names = self.settings.workers
        if not names:  # the api role: this process runs no worker
            return
        workers = self._build_workers(
            clients.workers,
            store=self._store,
            runner=self._runner,
            queues=self.settings.queues,
            sandbox=self.settings.workflow_sandbox,
            only=names,
        )
        tasks = running.spawn(workers, names)
        # Recorded before waiting, so that a rollback (stop_workers) finds them.
        self._workers, self._worker_tasks = workers, tasks
        await running.wait_running(workers, tasks, timeout=self.settings.worker_start_timeout, names=names)
        for name, task in zip(names, tasks, strict=True):
            task.add_done_callback(functools.partial(self._on_main_loop, self._on_worker_exit, name, clients))

    async def stop_workers(self) -> None:
        workers, tasks = self._workers, self._worker_tasks
        self._workers, self._worker_tasks = [], []
        if not workers:
            return
        # In the background: a shutdown on a dead connection must not hold up reconnection.
        retire = asyncio.create_task(
            self._workers_loop.run(self._retire(workers, tasks)), name="stigmer-retire-workers"
        )
        self._retiring.add(retire)
        retire.add_done_callback(self._retired)

    @property
    def workers(self) -> tuple[Worker, ...]:
        """The current generation's workers (empty unless CONNECTED, or while one starts)."""
        return tuple(self._workers)

    @property
    def worker_tasks(self) -> tuple[asyncio.Task[None], ...]:
        """Their ``run()`` tasks, on the workers' event loop."""
        return tuple(self._worker_tasks)

    @property
    def reports_in_flight(self) -> int:
        """Failure reports (from requests, workers) not yet handled by the lifecycle."""
        return len(self._reports)

    @property
    def retiring(self) -> int:
        """Generations of old workers still shutting down in the background."""
        return len(self._retiring)

    def _retired(self, task: asyncio.Task[None]) -> None:
        self._retiring.discard(task)
        if not self._retiring:
            self.reaper.soon()

    async def inject_creators(self, clients: TemporalClients) -> None:
        if not self.settings.creators:  # the worker role: no API, nothing to create with
            return
        queues = self.settings.queues
        agent = AgentExecutionCreator(clients.api, queues=queues)
        workflow = WorkflowExecutionCreator(clients.api, queues=queues)
        validator = WorkflowValidator(clients.api, queues=queues)
        self._creators = (agent, workflow, validator)
        self._targets.agent_execution(agent)
        self._targets.workflow_execution(workflow)
        self._targets.workflow_validation(validator)

    async def withdraw_creators(self) -> None:
        self._targets.agent_execution(None)
        self._targets.workflow_execution(None)
        self._targets.workflow_validation(None)
        # Calls still in flight on the lost connection answer UNAVAILABLE now (see creators._Bound).
        creators, self._creators = self._creators, ()
        for creator in creators:
            creator.abandon()

    async def close_client(self, clients: TemporalClients) -> None:
        # temporalio clients have no close(): the connection goes with the client object, which
        # old workers hold until they have shut down (what we want); the reaper collects it then.
        self.reaper.dropped(clients)
        self.reaper.soon()

    # ------------------------------------------------------------------ loops' helpers

    async def _check(self, clients: TemporalClients) -> None:
        await self._describe_namespace(clients, self.settings.health_timeout)

    async def _liveness(self) -> str | None:
        return await self._health_probe.answers(self.settings.liveness_timeout)

    def _on_main_loop(self, fn: Callable[..., object], *args: object) -> None:
        """Call ``fn`` on the loop the connection was started on (from a worker's done callback)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the main loop closed meanwhile: nobody left to tell
            loop.call_soon_threadsafe(fn, *args)

    async def _retire(self, workers: list[Worker], tasks: list[asyncio.Task[None]]) -> None:
        settings = self.settings
        await running.retire(
            workers, tasks, shutdown_timeout=settings.worker_shutdown_timeout, retire_limit=settings.worker_retire_limit
        )

    def _on_worker_exit(self, name: str, clients: TemporalClients, task: asyncio.Task[None]) -> None:
        if self._closing or task.cancelled() or clients is not self.lifecycle.client:
            return  # stopped on purpose, or an old worker winding down
        error = task.exception()
        cause = f"{name} worker stopped: {describe(error) if error else 'run() returned'}"
        logger.error("Temporal worker failed", worker=name, error=cause)
        self._spawn_report(cause, clients)

    def _spawn_report(self, cause: str, clients: TemporalClients | None) -> None:
        if self._closing:
            return
        task = asyncio.get_running_loop().create_task(self.lifecycle.report_failure(cause, client=clients))
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    def _run_connected_hook(self, event: TransitionEvent) -> None:
        """On every entry to CONNECTED: release the previous generation (if retired), and run the hook
        (the reconciler) on the new client in the background."""
        clients = self.lifecycle.client
        if event.dest is not State.CONNECTED or clients is None or self._closing:
            return
        if not self._retiring:  # the previous generation is garbage by now (or at _retired)
            self.reaper.soon()
        if self._on_connected is None:
            return
        # The workers' client: background work is better served by the SDK's patient retries.
        task: asyncio.Task[object] = asyncio.get_running_loop().create_task(self._hook(clients.workers))
        self._hooks.add(task)
        task.add_done_callback(self._hooks.discard)

    async def _hook(self, client: Client) -> object:
        assert self._on_connected is not None
        try:
            return await self._on_connected(TemporalSession(client, queues=self.settings.queues))
        except Exception as err:  # the hook must never take the connection down
            logger.opt(exception=err).error("on-connected hook failed: {}", describe(err))
            return None
