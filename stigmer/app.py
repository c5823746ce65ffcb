"""The Stigmer server process: wires store, controllers, the Temporal connection and gRPC.

Startup order is the promise "serves whether Temporal is up or not": the listener opens first and
says so, then Temporal is connected in the background. Shutdown runs the other way: health goes
NOT_SERVING, in-flight calls get ``grace`` seconds, then the connection (ticker, workers, client),
the managed Temporal child and the store are closed.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from loguru import logger

from stigmer import __version__
from stigmer.config import Config, split_host_port
from stigmer.controllers import (
    LEASE_KEY,
    AgentExecutionController,
    LeadingReconciler,
    Reconciler,
    ReconcileReport,
    Session,
    WorkflowController,
    WorkflowExecutionController,
)
from stigmer.errors import ConfigError, DatabaseError, ExitCode
from stigmer.managed_temporal import ManagedTemporal, TemporalBinaryMissing
from stigmer.metrics import MetricsEndpoint, MetricsListenError, ServerMetrics
from stigmer.outage import OutageLimit
from stigmer.server import BoundServer, ListenError, ServerHealth, Services, build_server
from stigmer.server.auth import ListenerSecurity, describe_protection, startup_warnings
from stigmer.store import Store
from stigmer.temporal.agents import AgentRunner
from stigmer.temporal.connection import CreatorTargets, TemporalConnection, process_runtime
from stigmer.temporal.runners import load_agent_runner
from stigmer.temporal.tls import TemporalSecurity


@dataclass
class Running:
    """What a running server holds; exposed for tests and status."""

    store: Store
    connection: TemporalConnection
    bound: BoundServer
    health: ServerHealth
    managed: ManagedTemporal | None
    #: None with ``--metrics-address none``: then nothing is measured at all.
    metrics: ServerMetrics | None = None
    metrics_endpoint: MetricsEndpoint | None = None


class StigmerServer:
    def __init__(self, config: Config, *, managed_temporal: bool = False, runner: AgentRunner | None = None) -> None:
        self.config = config
        self._managed_requested = managed_temporal
        #: None: the one config.agent_runner names, loaded at start.
        self._runner = runner
        self.running: Running | None = None
        self.started = asyncio.Event()
        self._listener = ListenerSecurity()
        self._stop: asyncio.Event | None = None
        self._run: asyncio.Task[int] | None = None
        #: What run() returned, once it has (under ``async with``: after the block).
        self.exit_code: ExitCode | None = None

    async def __aenter__(self) -> StigmerServer:
        """Serve in the background until the block ends; returns once the API serves.

        A server that cannot start (a bad certificate, an unusable data dir, a taken address)
        raises ``RuntimeError`` naming its exit code here; the log says why.
        """
        if self._run is not None:
            raise RuntimeError("StigmerServer: already started (a server runs once; make a new one)")
        self._stop = asyncio.Event()
        self._run = asyncio.create_task(self.run(self._stop), name="stigmer-server")
        started = asyncio.create_task(self.started.wait())
        try:
            await asyncio.wait({self._run, started}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            started.cancel()
        if self._run.done():
            self.exit_code = ExitCode(self._run.result())
            raise RuntimeError(f"StigmerServer did not start (exit {self.exit_code.value} {self.exit_code.name})")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop serving (graceful, bounded by the config's grace); safe after a failed start."""
        if self._run is None or self._stop is None:
            return
        self._stop.set()
        self.exit_code = ExitCode(await self._run)

    async def run(self, stop: asyncio.Event) -> int:
        """Serve until ``stop`` is set; return the process exit code (an :class:`ExitCode`).

        ``async with StigmerServer(config) as server:`` does the same in the background."""
        config = self.config
        logger.info(
            "Starting Stigmer Server",
            version=__version__,
            address=config.address,
            temporal=config.temporal_host_port,
            namespace=config.namespace,
            data_dir=str(config.data_dir),
            role=config.role.describe(),
            protection=describe_protection(config),
            temporal_security=config.temporal_security.describe() if config.temporal_security else "plaintext",
        )
        for warning in startup_warnings(config):
            logger.warning(warning)
        try:
            # Before anything starts: a bad certificate must not leave a managed Temporal behind.
            self._listener = ListenerSecurity.from_config(config)
        except ConfigError as err:
            logger.error("{}", err)
            return ExitCode.CONFIG
        if self._runner is None:
            try:
                # A user's module, imported before anything starts: one that fails is a setting to fix.
                chosen = load_agent_runner(config.agent_runner)
            except ConfigError as err:
                logger.error("{}", err)
                return ExitCode.CONFIG
            self._runner = chosen.runner
            logger.info("Agent runner: {}", chosen.describe())
        try:
            url = config.database_url.reveal() if config.database_url is not None else None
            store = Store.connect(url, data_dir=config.data_dir)
        except (DatabaseError, ConfigError) as err:
            logger.error("Cannot open the data store: {}", err)
            return ExitCode.CONFIG
        logger.info("Store: {}", store.path)
        managed: ManagedTemporal | None = None
        try:
            if self._managed_requested:
                host, port = split_host_port(config.temporal_host_port, name="TEMPORAL_HOST_PORT")
                managed = ManagedTemporal(host=host, port=port, namespace=config.namespace, data_dir=config.data_dir)
                try:
                    if not await managed.start():
                        managed = None
                except TemporalBinaryMissing as err:
                    logger.error("Cannot start a managed Temporal: {}", err)
                    return ExitCode.CONFIG
            return await self._serve(config, store, managed, stop)
        finally:
            if managed is not None:
                await managed.stop()
            store.close()
            logger.info("Stigmer Server stopped")

    @staticmethod
    def _api(
        config: Config, store: Store, connection: TemporalConnection, metrics: ServerMetrics | None
    ) -> tuple[Services, LeadingReconciler | None]:
        """The controllers of an API process (roles all and api), wired to the connection; a worker
        process serves only status and health, and never reconciles."""
        health = ServerHealth(connection.lifecycle, database=store)
        if not config.role.serves_api:
            return Services(
                agent_executions=None, workflows=None, workflow_executions=None, status=connection, health=health
            ), None
        # The controllers ask the connection for a fast retry; the connection hands them creators
        # while CONNECTED, and on every entry to CONNECTED the reconciler settles unfinished
        # executions (nothing is left in PENDING) -- in one API process at a time (the lease).
        reconciler = Reconciler(store=store, availability=connection)
        counted = _Counted(reconciler, metrics) if metrics is not None else reconciler
        leader = LeadingReconciler(counted, store.lease(LEASE_KEY), session=connection.session)
        ttl = config.request_id_ttl
        fast_fail = metrics.fast_fail if metrics is not None else None
        agent_executions = AgentExecutionController(
            store=store, availability=connection, request_id_ttl=ttl, on_fast_fail=fast_fail
        )
        workflows = WorkflowController(store=store, availability=connection, request_id_ttl=ttl, on_fast_fail=fast_fail)
        workflow_executions = WorkflowExecutionController(
            store=store, availability=connection, request_id_ttl=ttl, on_fast_fail=fast_fail
        )
        connection.send_creators_to(
            CreatorTargets(
                agent_execution=agent_executions.set_creator,
                workflow_execution=workflow_executions.set_creator,
                workflow_validation=workflows.set_validator,
            )
        )
        connection.when_connected(leader.on_connected)
        services = Services(
            agent_executions=agent_executions,
            workflows=workflows,
            workflow_executions=workflow_executions,
            status=connection,
            health=health,
        )
        return services, leader

    async def _serve(self, config: Config, store: Store, managed: ManagedTemporal | None, stop: asyncio.Event) -> int:
        settings = config.connection_settings()
        if managed is not None and settings.security.describe() != "plaintext":
            # Our own dev server speaks plaintext only; production credentials are not for it.
            logger.warning(
                "Ignoring Temporal TLS/API key settings ({}) for the managed local Temporal",
                settings.security.describe(),
            )
            settings = replace(settings, security=TemporalSecurity())
        assert self._runner is not None  # chosen in run()
        try:
            runtime = process_runtime(prometheus=config.temporal_metrics_address)
        except ConfigError as err:
            logger.error("{}", err)
            return ExitCode.CONFIG
        connection = TemporalConnection(settings, store=store, runner=self._runner, runtime=runtime)
        metrics = ServerMetrics() if config.metrics_address is not None else None
        services, leader = self._api(config, store, connection, metrics)
        limit = OutageLimit(connection.lifecycle, config.exit_after_outage) if config.exit_after_outage else None
        try:
            endpoint = _serve_metrics(metrics, config.metrics_address, connection, store)
        except MetricsListenError as err:
            logger.error("{}", err)
            return ExitCode.CONFIG
        try:
            bound = build_server(
                services,
                address=config.address,
                interceptors=self._listener.interceptors,
                credentials=self._listener.credentials,
                metrics=metrics.interceptor if metrics is not None else None,
            )
        except ListenError as err:
            logger.error("{}", err)
            if endpoint is not None:
                endpoint.stop()
            return ExitCode.UNAVAILABLE
        health = services.health
        await bound.server.start()
        await health.start()
        self.running = Running(
            store=store,
            connection=connection,
            bound=bound,
            health=health,
            managed=managed,
            metrics=metrics,
            metrics_endpoint=endpoint,
        )
        logger.info(
            "Stigmer Server started successfully",
            address=bound.address,
            metrics=endpoint.url if endpoint is not None else "off",
            temporal_metrics=config.temporal_metrics_address or "off",
        )
        if managed is not None:
            # The API already serves; give our own child a moment so the first dial finds it.
            await managed.wait_listening()
        await connection.start()
        self.started.set()
        watch = asyncio.create_task(limit.watch(stop), name="stigmer-outage-limit") if limit else None
        leading = asyncio.create_task(leader.run(), name="stigmer-reconciler-lease") if leader else None
        try:
            await stop.wait()
            if limit is not None and limit.tripped:
                logger.warning(
                    "Temporal has been unavailable for {:g}s (--exit-after-outage): stopping the server "
                    "so that its supervisor can restart it (exit {})",
                    limit.limit,
                    ExitCode.UNAVAILABLE,
                )
        finally:
            for task in (watch, leading):
                if task is not None:
                    task.cancel()
            logger.info("Shutting down Stigmer Server", grace=config.grace)
            await health.set_not_serving_all()
            await bound.server.stop(grace=config.grace)
            await connection.close()
            await health.close()
            if metrics is not None:
                metrics.close()
            if endpoint is not None:
                await asyncio.to_thread(endpoint.stop)
        return ExitCode.UNAVAILABLE if limit is not None and limit.tripped else ExitCode.OK


def _serve_metrics(
    metrics: ServerMetrics | None, address: str | None, connection: TemporalConnection, store: Store
) -> MetricsEndpoint | None:
    """Feed ``metrics`` from the connection and the store, and serve them on ``address``.

    Before the connection starts, so its first transition is counted. MetricsListenError when the
    address is taken (nothing is left subscribed then).
    """
    if metrics is None or address is None:
        return None
    connection.observe_probes(metrics.probe)
    metrics.follow(connection.lifecycle, workers=connection.workers_by_queue)
    metrics.watch(store)
    endpoint = MetricsEndpoint(address, metrics.registry)
    try:
        endpoint.start()
    except MetricsListenError:
        metrics.close()
        raise
    logger.info("Serving metrics on {}", endpoint.url)
    return endpoint


class _Counted:
    """The reconciler, each pass counted by the metrics."""

    def __init__(self, reconciler: Reconciler, metrics: ServerMetrics) -> None:
        self._reconciler = reconciler
        self._metrics = metrics

    async def reconcile(self, session: Session) -> ReconcileReport:
        report = await self._reconciler.reconcile(session)
        self._metrics.reconciled(report)
        return report
