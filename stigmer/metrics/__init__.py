"""Prometheus metrics of one stigmer server, on a registry of its own (issue 17).

The face of the package; import from here. One :class:`ServerMetrics` per server, each with its own
``prometheus_client.CollectorRegistry`` (never the global default one), so tests can run several
servers in one process. What feeds it is injected by the wiring (stigmer.app): nothing below this
package imports it.

- ``connection`` (:class:`ConnectionMetrics`): the Temporal connection, from the lifecycle's
  transition feed and the probes' results;
- ``rpc`` (:class:`GrpcMetrics`): the gRPC API, a server interceptor;
- ``executions`` (:class:`ExecutionMetrics`): executions by phase (the store, at scrape time), the
  reconciler's actions, creates refused fast;
- ``endpoint`` (:class:`MetricsEndpoint`): ``/metrics`` over HTTP (prometheus_client's server).

The Temporal SDK's own metrics (``temporal_`` prefix) are not here: the SDK's Runtime exports them
on an address of its own (stigmer.temporal.connection.process_runtime).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest

from stigmer.metrics.connection import ConnectionMetrics, LifecycleView, WorkersView
from stigmer.metrics.endpoint import MetricsEndpoint, MetricsListenError, split_address
from stigmer.metrics.executions import ExecutionMetrics, PhaseCounts
from stigmer.metrics.rpc import GrpcMetrics

__all__ = [
    "ConnectionMetrics",
    "ExecutionMetrics",
    "GrpcMetrics",
    "LifecycleView",
    "MetricsEndpoint",
    "MetricsListenError",
    "PhaseCounts",
    "ServerMetrics",
    "WorkersView",
    "split_address",
]


class ServerMetrics:
    """Every metric of one server, on ``registry``; wire it with the methods below.

    - ``follow(lifecycle, workers=...)``: the connection's transitions, from now on;
    - ``probe(kind, answered)``: a probe's result (``TemporalConnection.observe_probes``);
    - ``interceptor``: first among the gRPC server's interceptors;
    - ``watch(store)``: executions by phase, read at every scrape;
    - ``reconciled(report)`` after each reconciliation pass, ``fast_fail(kind)`` for each create
      refused because Temporal is away.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = CollectorRegistry()
        self.connection = ConnectionMetrics(self.registry, clock=clock)
        self.interceptor = GrpcMetrics(self.registry)
        self.executions = ExecutionMetrics(self.registry)
        self.follow = self.connection.follow
        self.probe = self.connection.probe
        self.watch = self.executions.watch
        self.reconciled = self.executions.reconciled
        self.fast_fail = self.executions.fast_fail

    def close(self) -> None:
        """Stop following the lifecycle; the values stay readable."""
        self.connection.close()

    def exposition(self) -> str:
        """The registry in Prometheus' text format (what ``/metrics`` serves)."""
        return generate_latest(self.registry).decode()
