"""One connection generation's clients, where its creators go, and how their connections are released."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from loguru import logger
from temporalio.client import Client
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    PrometheusConfig,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

from stigmer.errors import ConfigError
from stigmer.temporal.creators import AgentExecutionCreator, WorkflowExecutionCreator, WorkflowValidator

CORE_LOGGER = "temporalio.core"
#: Seconds between a client being dropped and the collection that releases its connection.
RELEASE_DELAY = 0.5


@dataclass(frozen=True, eq=False)
class TemporalClients:
    """One verified connection generation: the workers' client and the API's (creators') client.

    Two connections with different retry policies (see API_RETRY); the same object twice when
    ``ConnectionSettings.api_retry`` is None. Compared by identity: each dial makes a new one.
    """

    workers: Client
    api: Client

    def __contains__(self, client: object) -> bool:
        return client is self.workers or client is self.api


@dataclass(frozen=True, kw_only=True)
class CreatorTargets:
    """Where creators go: the controllers' setters. ``None`` withdraws."""

    agent_execution: Callable[[AgentExecutionCreator | None], None]
    workflow_execution: Callable[[WorkflowExecutionCreator | None], None]
    workflow_validation: Callable[[WorkflowValidator | None], None]

    @classmethod
    def nowhere(cls) -> CreatorTargets:
        """Until TemporalConnection.send_creators_to(): creators are made, and go nowhere."""
        return cls(agent_execution=_drop, workflow_execution=_drop, workflow_validation=_drop)


def _drop(creator: object) -> None:
    return None


def make_runtime(*, prometheus: str | None = None) -> Runtime:
    """A Temporal runtime whose core log lines go through Python logging (then loguru).

    Without this the SDK core writes its own ANSI-coloured WARN lines straight to stderr, about
    one per second per worker during an outage. ``prometheus`` (HOST:PORT): the SDK serves its own
    metrics there (``temporal_`` prefix, Prometheus' naming: ``_total``, ``_seconds``); ValueError
    when the address cannot be bound. Make one per process: see :func:`process_runtime`.
    """
    metrics = None
    if prometheus is not None:
        metrics = PrometheusConfig(
            bind_address=prometheus, counters_total_suffix=True, unit_suffix=True, durations_as_seconds=True
        )
    return Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(
                filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                forwarding=LogForwardingConfig(logger=logging.getLogger(CORE_LOGGER)),
            ),
            metrics=metrics,
        )
    )


_process_runtime: Runtime | None = None
_process_prometheus: str | None = None
_runtime_lock = threading.Lock()


def process_runtime(*, prometheus: str | None = None) -> Runtime:
    """The process's one Temporal runtime (every connection's clients and workers), made on first use.

    One per process because a runtime that exports metrics binds its address, and a runtime is a
    thread pool of its own. Only the first call's ``prometheus`` counts (the server's, made first
    at start); a later call asking for another logs a warning. ConfigError (naming the flag) when
    the address cannot be bound.
    """
    global _process_runtime, _process_prometheus
    with _runtime_lock:
        if _process_runtime is None:
            try:
                _process_runtime = make_runtime(prometheus=prometheus)
            except (ValueError, RuntimeError) as err:
                raise ConfigError(
                    f"cannot serve the Temporal SDK's metrics on {prometheus}: {err} (choose another address with "
                    "--temporal-metrics-address / STIGMER_TEMPORAL_METRICS_ADDRESS, or `none`)"
                ) from err
            _process_prometheus = prometheus
        elif prometheus is not None and prometheus != _process_prometheus:
            logger.warning(
                "The Temporal SDK's metrics stay {}: this process made its Temporal runtime first",
                f"on {_process_prometheus}" if _process_prometheus else "off",
                asked=prometheus,
            )
        return _process_runtime


class ClientReaper:
    """Releases the connections of clients the connection has dropped.

    A temporalio ``Client`` and its implementation refer to each other, so a client nobody holds
    any more goes only with the cyclic garbage collector -- and its connection with it (the SDK
    offers no close: temporalio/sdk-python#1202). A quiet server rarely collects: the chaos soak
    found a retired generation's connection (re-dialled by its old workers' ShutdownWorker calls
    once Temporal was back) still open 25 s after the workers had stopped.

    :meth:`dropped` is told of each generation the lifecycle lets go of, :meth:`soon` when one
    has probably become garbage (its workers retired, a new generation connected). A collection
    then runs ``first_delay`` s later (~20-30 ms of CPU), and again, ``first_delay`` doubling up
    to ``max_delay``, for as long as a dropped client is still alive (weak references say):
    whatever held it last (an old worker finishing, a request in flight) lets go on its own time.
    """

    def __init__(self, *, first_delay: float = RELEASE_DELAY, max_delay: float = 8.0) -> None:
        self._first_delay, self._max_delay = first_delay, max_delay
        self._delay = first_delay
        self._dropped: list[weakref.ref[Client]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        #: Collections run (for tests and the log).
        self.collections = 0

    @property
    def scheduled(self) -> bool:
        """A collection is due."""
        return self._timer is not None

    @property
    def alive(self) -> int:
        """Dropped clients not collected yet."""
        return sum(ref() is not None for ref in self._dropped)

    def dropped(self, clients: TemporalClients) -> None:
        known = {id(ref()) for ref in self._dropped}
        for client in (clients.workers, clients.api):
            if id(client) not in known:
                self._dropped.append(weakref.ref(client))
                known.add(id(client))

    def soon(self) -> None:
        """Collect a moment from now (and until every dropped client is gone)."""
        self._delay = self._first_delay
        if self._timer is None and not self._closed:
            self._timer = asyncio.get_running_loop().call_later(self._delay, self._collect)

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _collect(self) -> None:
        self._timer = None
        started = time.perf_counter()
        found = gc.collect()
        self.collections += 1
        self._dropped = [ref for ref in self._dropped if ref() is not None]
        logger.debug(
            "Collected garbage to release dropped Temporal clients",
            objects=found,
            ms=round((time.perf_counter() - started) * 1000, 1),
            still_referenced=len(self._dropped),
        )
        if self._dropped and not self._closed:
            self._delay = min(self._delay * 2, self._max_delay)
            self._timer = asyncio.get_running_loop().call_later(self._delay, self._collect)
