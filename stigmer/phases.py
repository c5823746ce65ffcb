"""Where executions and their tasks are in their lives: a leaf (the store, the client and the
CLI share these enums; importing it loads nothing else)."""

from __future__ import annotations

import enum

__all__ = ["Phase", "TaskStatus"]


class Phase(enum.StrEnum):
    """Where an execution is in its life. Once terminal, a record never changes again."""

    PENDING = "PENDING"  # stored; the Temporal workflow may not have picked it up yet
    IN_PROGRESS = "IN_PROGRESS"  # an activity reported that work started
    COMPLETED = "COMPLETED"  # finished with a result (terminal)
    FAILED = "FAILED"  # finished with an error (terminal)
    CANCELLED = "CANCELLED"  # stopped on request (terminal)

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_PHASES


_TERMINAL_PHASES = frozenset({Phase.COMPLETED, Phase.FAILED, Phase.CANCELLED})


class TaskStatus(enum.StrEnum):
    """One task of a workflow execution. Statuses only move forward: PENDING < RUNNING < the rest."""

    PENDING = "PENDING"  # not reached yet
    RUNNING = "RUNNING"  # its activity started
    COMPLETED = "COMPLETED"  # produced its output (terminal)
    FAILED = "FAILED"  # raised; the execution usually fails too (terminal)
    SKIPPED = "SKIPPED"  # not run, e.g. its `if` was false or the execution was cancelled (terminal)
    CANCELLED = "CANCELLED"  # was running when its execution was cancelled (terminal)

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_TASK_STATUSES

    @property
    def rank(self) -> int:
        """Progress order used to refuse going backwards (a terminal status is never replaced)."""
        return 2 if self.terminal else (1 if self is TaskStatus.RUNNING else 0)


_TERMINAL_TASK_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.SKIPPED, TaskStatus.CANCELLED})
