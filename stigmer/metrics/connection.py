"""The Temporal connection's metrics, fed by the lifecycle's transition feed and the probes' results.

Counters and the outage histogram move as each transition is announced (on the server's loop);
the gauges -- the current state, the current outage's age, the workers running -- are computed
when Prometheus scrapes (on the endpoint's thread), from what the last transition left and a
callback, so that a scrape never sees two states at 1 or an age that stopped growing.

What counts as an outage: from leaving CONNECTED (for anything but STOPPED) until CONNECTED again.
The wait for the first connection after start is not one for the histogram, but the age gauge
counts it (the server has had no connection since it started), which is what an alert on "not
CONNECTED for 2 minutes" wants.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from statemachine import TRANSITIONS, State, TransitionEvent
from statemachine.supervisor import SUPERSEDED

#: Outages last from a second (a restart the comeback probe catches) to hours (a region down).
OUTAGE_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 4 * 3600.0)

#: stigmer_temporal_reconnect_attempts_total{outcome}: how each attempt (dial + verify) ended.
SUCCESS, FAILURE, SUPERSEDED_OUTCOME, CANCELLED = "success", "failure", "superseded", "cancelled"
#: stigmer_temporal_probe_total{probe,result}: the liveness probe (while CONNECTED) and the
#: comeback probe (while not), answered or not.
LIVENESS, COMEBACK = "liveness", "comeback"
ANSWERED, FAILED = "answered", "failed"

#: The queue of each worker -> whether it runs now (TemporalConnection.workers_by_queue).
WorkersView = Callable[[], Mapping[str, bool]]


class TransitionFeed(Protocol):
    def subscribe(self, listener: Callable[[TransitionEvent], None]) -> Callable[[], None]: ...


class LifecycleView(Protocol):
    """The part of ConnectionLifecycle the metrics need: its state and its transition feed."""

    @property
    def events(self) -> TransitionFeed: ...

    @property
    def state(self) -> State: ...


class ConnectionMetrics:
    """``follow(lifecycle)`` once; ``probe(kind, answered)`` from the probes; ``close()`` to stop."""

    def __init__(self, registry: CollectorRegistry, *, clock: Callable[[], float] = time.monotonic) -> None:
        """``clock`` must be the lifecycle's monotonic clock: outages are measured on events' ``at``."""
        self._clock = clock
        self._state: State | None = None
        self._outage_since: float | None = None
        self._workers: WorkersView | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.transitions = Counter(
            "stigmer_temporal_transitions",
            "Transitions of the Temporal connection lifecycle, by edge.",
            ["from", "to", "trigger"],
            registry=registry,
        )
        for edge in TRANSITIONS:  # every edge from the start, at 0: rate() needs the series to exist
            for source in edge.sources:
                self.transitions.labels(source.value, edge.dest.value, edge.trigger.value)
        self.attempts = Counter(
            "stigmer_temporal_reconnect_attempts",
            "Attempts to (re)connect to Temporal (the first dial and every retry), by how they ended.",
            ["outcome"],
            registry=registry,
        )
        for outcome in (SUCCESS, FAILURE, SUPERSEDED_OUTCOME, CANCELLED):
            self.attempts.labels(outcome)
        self.outages = Histogram(
            "stigmer_temporal_outage_seconds",
            "Completed outages: seconds from leaving CONNECTED until CONNECTED again.",
            buckets=OUTAGE_BUCKETS,
            registry=registry,
        )
        self.probes = Counter(
            "stigmer_temporal_probe",
            "Health questions to Temporal: the liveness probe while CONNECTED, the comeback probe while not.",
            ["probe", "result"],
            registry=registry,
        )
        self._answered = {kind: self.probes.labels(kind, ANSWERED) for kind in (LIVENESS, COMEBACK)}
        self._failed = {kind: self.probes.labels(kind, FAILED) for kind in (LIVENESS, COMEBACK)}
        registry.register(_Gauges(self))

    def follow(self, lifecycle: LifecycleView, *, workers: WorkersView | None = None) -> None:
        """Count every transition from now on; the gauges start from the lifecycle's state now."""
        if self._unsubscribe is not None:
            raise RuntimeError("ConnectionMetrics.follow() called twice")
        self._workers = workers
        # Subscribe before reading the state: a transition in between is then counted, not lost.
        self._unsubscribe = lifecycle.events.subscribe(self.on_transition)
        if self._state is None:
            self._state = lifecycle.state
            if self._state is not State.CONNECTED and self._state is not State.STOPPED:
                self._outage_since = self._clock()  # not connected since the server started

    def close(self) -> None:
        """Stop following the lifecycle (the metrics keep their values); safe twice."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def on_transition(self, event: TransitionEvent) -> None:
        source, dest = event.source, event.dest
        self.transitions.labels(source.value, dest.value, event.trigger.value).inc()
        if event.trigger.succeeded:
            self.attempts.labels(SUCCESS).inc()
        elif event.trigger.attempt_failed:
            self.attempts.labels(SUPERSEDED_OUTCOME if event.cause == SUPERSEDED else FAILURE).inc()
        elif dest is State.STOPPED and source.dialling:
            self.attempts.labels(CANCELLED).inc()
        if dest is State.CONNECTED:
            if self._outage_since is not None and source is State.RECONNECTING:
                self.outages.observe(max(0.0, event.at - self._outage_since))
            self._outage_since = None
        elif dest is State.STOPPED:
            self._outage_since = None
        elif source is State.CONNECTED or self._outage_since is None:
            self._outage_since = event.at
        self._state = dest

    def probe(self, kind: str, answered: bool) -> None:
        """One probe's result; ``kind`` is LIVENESS or COMEBACK (stigmer.temporal.probe's names)."""
        series = self._answered if answered else self._failed
        counter = series.get(kind)
        if counter is None:  # a probe added later: still counted, under its own name
            counter = series[kind] = self.probes.labels(kind, ANSWERED if answered else FAILED)
        counter.inc()

    # -- read at scrape time ------------------------------------------------------------------

    @property
    def state(self) -> State | None:
        return self._state

    def outage_age(self) -> float:
        since = self._outage_since
        return 0.0 if since is None else max(0.0, self._clock() - since)

    def workers_running(self) -> Mapping[str, bool]:
        return {} if self._workers is None else self._workers()


class _Gauges(Collector):
    """The gauges of ConnectionMetrics, computed at each scrape."""

    def __init__(self, metrics: ConnectionMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        metrics = self._metrics
        current = metrics.state
        state = GaugeMetricFamily(
            "stigmer_temporal_connection_state",
            "The Temporal connection's lifecycle state: 1 for the current one, 0 for the others.",
            labels=["state"],
        )
        for each in State:
            state.add_metric([each.value], 1.0 if each is current else 0.0)
        yield state
        yield GaugeMetricFamily(
            "stigmer_temporal_outage_age_seconds",
            "Seconds since the server last had a Temporal connection (since it started, if it never had one); "
            "0 while CONNECTED.",
            value=metrics.outage_age(),
        )
        workers = GaugeMetricFamily(
            "stigmer_temporal_workers_running",
            "1 while the worker of this task queue runs (only while CONNECTED), else 0.",
            labels=["queue"],
        )
        for queue, running in sorted(metrics.workers_running().items()):
            workers.add_metric([queue], 1.0 if running else 0.0)
        yield workers
