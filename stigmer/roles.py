"""Process roles: which parts of stigmer one process runs.

``all`` (the default) serves the gRPC API and runs the three Temporal workers, as one process has
always done. ``api`` serves the API and starts workflows but runs no worker; ``worker`` runs the
workers (``--queues`` chooses which) and serves only grpc.health and the status service. Every
role has the same connection lifecycle; what its CONNECTED entry does depends on the role
(creators for the API, workers for the workers, both for ``all``: stigmer.temporal.connection).
Roles other than ``all`` need a store that several processes share (PostgreSQL).

A leaf: imports nothing but stigmer.errors, so config and the CLI can use it cheaply.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from stigmer.errors import ConfigError

__all__ = ["QUEUE_WORKERS", "Queue", "Role", "RoleSpec", "parse_queues"]


class Role(enum.StrEnum):
    ALL = "all"
    API = "api"
    WORKER = "worker"


class Queue(enum.StrEnum):
    AGENT = "agent"
    WORKFLOW = "workflow"
    VALIDATION = "validation"


#: --queues names -> the connection's worker names (stigmer.temporal.connection.WORKER_NAMES).
QUEUE_WORKERS: dict[Queue, str] = {
    Queue.AGENT: "agent execution",
    Queue.WORKFLOW: "workflow execution",
    Queue.VALIDATION: "workflow validation",
}


def parse_queues(text: str | None) -> frozenset[Queue]:
    """ "agent,workflow" -> those queues; None or "" -> all three. ConfigError naming the setting."""
    if text is None or not text.strip():
        return frozenset(Queue)
    found: set[Queue] = set()
    for part in text.split(","):
        name = part.strip().lower()
        try:
            found.add(Queue(name))
        except ValueError:
            known = ", ".join(q.value for q in Queue)
            raise ConfigError(f"--queues / STIGMER_QUEUES: unknown queue {part.strip()!r} (known: {known})") from None
    return frozenset(found)


@dataclass(frozen=True)
class RoleSpec:
    role: Role = Role.ALL
    queues: frozenset[Queue] = frozenset(Queue)

    @property
    def serves_api(self) -> bool:
        return self.role is not Role.WORKER

    @property
    def worker_names(self) -> tuple[str, ...]:
        """The workers this process runs, in the connection's fixed order (none for ``api``)."""
        if self.role is Role.API:
            return ()
        return tuple(QUEUE_WORKERS[q] for q in Queue if q in self.queues)

    def describe(self) -> str:
        if self.role is Role.API:
            return "api (creators, no workers)"
        queues = ",".join(q.value for q in Queue if q in self.queues)
        return f"{self.role.value} (workers: {queues}{'; creators' if self.serves_api else ''})"
