"""The executions' metrics: how many are in each phase (read from the store at scrape time), what
the reconciler did, and how many creates were refused at once because Temporal was away."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

from loguru import logger
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

#: stigmer_reconciler_actions_total{action}: the ReconcileReport fields counted, and their label.
RECONCILER_ACTIONS = {
    "running": "running",
    "restarted": "restarted",
    "failed": "failed",
    "cancelled": "cancelled",
    "finished": "finished",
    "left_to_parent": "left_to_parent",
    "errors": "error",
}
#: stigmer_create_fast_fails_total{kind}: what was being created.
CREATE_KINDS = ("agent_execution", "workflow_execution", "workflow")


class PhaseCounts(Protocol):
    """The store's ``count_by_phase()``: ``{kind: {phase: count}}``."""

    def count_by_phase(self) -> Mapping[str, Mapping[str, int]]: ...


class Report(Protocol):
    """What the metrics read of a stigmer.controllers.ReconcileReport."""

    checked: int
    interrupted: bool
    superseded: bool


class ExecutionsGauge(Collector):
    """``stigmer_executions{kind,phase}``: one ``count_by_phase()`` per scrape.

    A store that cannot answer (PostgreSQL down) leaves the gauge out of that scrape rather than
    failing the whole scrape or reporting zeros that look like an empty store.
    """

    def __init__(self, store: PhaseCounts) -> None:
        self._store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            counts = self._store.count_by_phase()
        except Exception as err:  # the store logs its outage; one line per scrape would flood
            logger.debug("Executions gauge left out of this scrape: {}", err)
            return
        gauge = GaugeMetricFamily(
            "stigmer_executions", "Executions in the store, by kind and phase.", labels=["kind", "phase"]
        )
        for kind, phases in sorted(counts.items()):
            for phase, count in sorted(phases.items()):
                gauge.add_metric([kind, phase], float(count))
        yield gauge


class ExecutionMetrics:
    """The reconciler's and the creates' counters, and the store-backed gauge (``watch(store)``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._gauge: ExecutionsGauge | None = None
        self.reconciler_actions = Counter(
            "stigmer_reconciler_actions",
            "What reconciliation passes did with unfinished executions (running: left alone, restarted, "
            "failed, cancelled, finished meanwhile, left_to_parent, error: retried next pass).",
            ["action"],
            registry=registry,
        )
        for action in RECONCILER_ACTIONS.values():
            self.reconciler_actions.labels(action)
        self.reconciler_passes = Counter(
            "stigmer_reconciler_passes",
            "Reconciliation passes, by outcome (completed, interrupted: Temporal went away, superseded: "
            "a newer connection ran it).",
            ["outcome"],
            registry=registry,
        )
        for outcome in ("completed", "interrupted", "superseded"):
            self.reconciler_passes.labels(outcome)
        self.fast_fails = Counter(
            "stigmer_create_fast_fails",
            "Creates refused with UNAVAILABLE at once because Temporal was not connected (nothing stored).",
            ["kind"],
            registry=registry,
        )
        for kind in CREATE_KINDS:
            self.fast_fails.labels(kind)

    def watch(self, store: PhaseCounts) -> None:
        """Report ``store``'s executions by phase at every scrape. Once."""
        if self._gauge is not None:
            raise RuntimeError("ExecutionMetrics.watch() called twice")
        self._gauge = ExecutionsGauge(store)
        self._registry.register(self._gauge)

    def reconciled(self, report: Report) -> None:
        """Count one pass (a ReconcileReport)."""
        if report.superseded:
            self.reconciler_passes.labels("superseded").inc()
            return
        self.reconciler_passes.labels("interrupted" if report.interrupted else "completed").inc()
        for field, action in RECONCILER_ACTIONS.items():
            count = getattr(report, field, 0)
            if count:
                self.reconciler_actions.labels(action).inc(count)

    def fast_fail(self, kind: str) -> None:
        """A create of ``kind`` (CREATE_KINDS) was refused: no Temporal connection."""
        self.fast_fails.labels(kind).inc()
