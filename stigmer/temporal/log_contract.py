"""The log lines users grep for (docs/log-contract.md), written from the lifecycle's record.

Each state change is logged once and in order, from the machine's transition events; repeats of
an outage's attempts are summarised (the first three at INFO/WARN, then one per
:data:`ATTEMPT_LOG_INTERVAL`, the rest at DEBUG).
"""

from __future__ import annotations

from collections.abc import Callable

from loguru import logger

from statemachine import TransitionEvent, Trigger

#: During an outage, after the first three attempts, at most one attempt this often is logged
#: at INFO (its failure at WARNING); the others at DEBUG.
ATTEMPT_LOG_INTERVAL = 30.0


class TransitionLog:
    """Subscribe an instance to ``lifecycle.events``; ``generation`` reads the lifecycle's."""

    def __init__(self, *, host_port: str, namespace: str, generation: Callable[[], int]) -> None:
        self._host_port = host_port
        self._namespace = namespace
        self._generation = generation
        self._attempt_loud = True  # the current attempt's lines go out at INFO/WARN (see _worth_logging)
        self._attempt_logged_at: float | None = None

    def __call__(self, event: TransitionEvent) -> None:
        self.log(event)

    def _worth_logging(self, event: TransitionEvent) -> bool:
        """INFO for the first three attempts of an outage, then one per ATTEMPT_LOG_INTERVAL; the
        rest go to DEBUG. By time, not by count: attempts come seconds apart on the backoff but
        a few per second while a restarted Temporal warms up (the comeback probe)."""
        if (
            event.attempt <= 3
            or self._attempt_logged_at is None
            or (event.at - self._attempt_logged_at >= ATTEMPT_LOG_INTERVAL)
        ):
            self._attempt_logged_at = event.at
            return True
        return False

    def log(self, event: TransitionEvent) -> None:
        log = logger.bind(state=f"{event.source.name}->{event.dest.name}", attempt=event.attempt)
        if event.trigger is Trigger.START and event.attempt == 0:
            log.info("Connecting to Temporal at {} (namespace {})", self._host_port, self._namespace)
        elif event.trigger.dials:
            self._attempt_loud = self._worth_logging(event)
            if self._attempt_loud:
                log.info("Attempting Temporal reconnection (attempt {}, backoff {:g}s)", event.attempt, event.backoff)
            else:
                log.debug("Attempting Temporal reconnection (attempt {}, backoff {:g}s)", event.attempt, event.backoff)
        elif event.trigger.succeeded:
            # Generation counts entries to CONNECTED: 1 means these are the first workers ever.
            first_workers = self._generation() == 1
            if event.trigger is Trigger.CONNECT_OK and event.attempt == 0:
                log.info("✅ Initial Temporal connection successful")
                log.info("All Temporal workers started")
                return
            log.info("✅ Temporal reconnected successfully")
            if first_workers:
                log.info("All Temporal workers started")
            log.info("✅ Workers restarted successfully")
            log.info("✅ Workflow creators reinjected successfully")
        elif event.trigger is Trigger.CONNECT_FAILED and event.attempt == 0:
            log.warning(
                "Failed initial Temporal connection - will retry automatically (error: {}; next try in {:g}s)",
                event.cause,
                event.backoff,
            )
        elif event.trigger.attempt_failed:
            if self._attempt_loud:
                log.warning(
                    "Temporal reconnection failed, will retry (attempt {}: {}; next try in {:g}s)",
                    event.attempt,
                    event.cause,
                    event.backoff,
                )
            else:
                log.debug("Temporal reconnection failed, will retry (attempt {}: {})", event.attempt, event.cause)
        elif event.trigger is Trigger.HEALTH_FAILED:
            log.warning("Temporal connection unhealthy, initiating reconnection ({})", event.cause)
            log.info("Stopping old workers")
        elif event.trigger is Trigger.STOP:
            log.info("Temporal connection stopped")
        for error in event.errors:
            log.warning("Teardown step failed: {}", error)
