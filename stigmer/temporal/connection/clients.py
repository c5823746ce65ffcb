"""One connection generation's clients, where its creators go, and how their connections are released."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from loguru import logger
from temporalio.client import Client
from temporalio.runtime import LogForwardingConfig, LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

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


def make_runtime() -> Runtime:
    """A Temporal runtime whose core log lines go through Python logging (then loguru).

    Without this the SDK core writes its own ANSI-coloured WARN lines straight to stderr, about
    one per second per worker during an outage.
    """
    return Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(
                filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
                forwarding=LogForwardingConfig(logger=logging.getLogger(CORE_LOGGER)),
            )
        )
    )


def release_unreferenced_clients() -> None:
    """Collect garbage now: a temporalio ``Client`` and its implementation refer to each other,
    so a client nobody holds any more goes only with the cyclic garbage collector -- and its
    connection with it. A quiet server rarely collects: the chaos soak found a retired
    generation's connection (re-dialled by its workers' ShutdownWorker calls once Temporal was
    back) still open 25 s after the workers had stopped. Called once per retired generation;
    the SDK offers no close (temporalio/sdk-python#1202)."""
    started = time.perf_counter()
    found = gc.collect()
    logger.debug(
        "Released unreferenced Temporal clients", objects=found, ms=round((time.perf_counter() - started) * 1000, 1)
    )
