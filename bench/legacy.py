"""The original Go server's reconnection design, for side-by-side benchmarks (not in the product).

Retries every health interval (15 s by default) and only then; no fast path for requests, no
comeback probe, no liveness probe (a dead Temporal is noticed at the next health check), and the
API shares the workers' client with the SDK's default retries. The Go server retried on its
health ticker; a constant backoff equal to the interval retries on the same period (the phase
relative to Temporal's comeback is as arbitrary either way), so the product needs no mode for it.

Servers run this way through bench/patched_server.py (``STIGMER_BENCH_PATCH=legacy``), which
``harness.start_stigmer(..., patch="legacy")`` sets.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from statemachine import BackoffPolicy

if TYPE_CHECKING:
    from stigmer.temporal.connection import ConnectionSettings

PATCH = "legacy"


def legacy_settings(settings: ConnectionSettings) -> ConnectionSettings:
    """``settings`` (address, credentials, intervals) with the Go server's reconnection design."""
    period = settings.health_interval
    return replace(
        settings,
        fast_path=False,
        probe=False,
        liveness=False,
        api_retry=None,
        backoff=BackoffPolicy(initial=period, cap=period),
    )


def install() -> None:
    """Make every server this process starts use :func:`legacy_settings` (patched_server.py)."""
    from stigmer.config import Config

    shipped = Config.connection_settings

    def connection_settings(self: Config) -> ConnectionSettings:
        return legacy_settings(shipped(self))

    Config.connection_settings = connection_settings  # type: ignore[method-assign]
