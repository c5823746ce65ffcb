"""StatusService: a snapshot of the Temporal connection, whatever state it is in."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any, Protocol

import grpc

from stigmer import __version__
from stigmer.api import status_pb2, status_pb2_grpc
from stigmer.server import convert
from stigmer.server.errors import grpc_errors
from stigmer.temporal.status import ConnectionStatus


class StatusProvider(Protocol):
    """Implemented by TemporalConnection; a lock-free read, so GetStatus always answers at once."""

    def status(self) -> ConnectionStatus: ...


class StatusServicer(status_pb2_grpc.StatusServiceServicer):
    def __init__(self, provider: StatusProvider, *, version: str = __version__) -> None:
        self._provider = provider
        self._version = version

    @grpc_errors
    async def GetStatus(
        self, request: status_pb2.GetStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> status_pb2.ServerStatus:
        status = convert.server_status_to_proto(self._provider.status(), version=self._version)
        status.process.CopyFrom(process_stats())
        return status


def process_stats() -> status_pb2.ProcessStats:
    """Tasks, threads and fds of this process, read from asyncio and /proc (0 where unreadable)."""
    stats = status_pb2.ProcessStats(asyncio_tasks=len(asyncio.all_tasks()))
    with contextlib.suppress(OSError, StopIteration, ValueError):
        status = Path("/proc/self/status").read_text()
        stats.threads = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))
    with contextlib.suppress(OSError):
        stats.open_fds = len(os.listdir("/proc/self/fd"))
    return stats
