"""The Temporal connection: the lifecycle machine's effects bound to the temporalio SDK.

The face of the package; import from here. ``core`` holds :class:`TemporalConnection` (the
machine, its loops and effects), ``settings`` its knobs, ``clients`` one generation's clients
and their release, ``running`` the start and retirement of a generation's workers. What the
connection reports about itself is stigmer.temporal.status.ConnectionStatus (a leaf).
"""

from stigmer.temporal.connection.clients import CreatorTargets, TemporalClients, make_runtime, process_runtime
from stigmer.temporal.connection.core import TemporalConnection
from stigmer.temporal.connection.running import WORKER_NAMES, WorkerStartError
from stigmer.temporal.connection.settings import API_RETRY, JITTER, ConnectionSettings

__all__ = [
    "API_RETRY",
    "JITTER",
    "WORKER_NAMES",
    "ConnectionSettings",
    "CreatorTargets",
    "TemporalClients",
    "TemporalConnection",
    "WorkerStartError",
    "make_runtime",
    "process_runtime",
]
