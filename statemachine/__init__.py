"""The Temporal connection lifecycle: states, transitions, backoff, the event record and the loops.

Pure Python plus `transitions`; no Temporal, no gRPC. The service binds the effects.
"""

from statemachine.backoff import BackoffPolicy
from statemachine.clock import Clock, ManualClock, SystemClock, with_timeout
from statemachine.events import EventLog, TransitionEvent
from statemachine.lifecycle import ConnectionLifecycle, Effects, Snapshot
from statemachine.states import State, Trigger
from statemachine.supervisor import Supervisor
from statemachine.table import TRANSITIONS, Edge, Misconfiguration, describe

__all__ = [
    "TRANSITIONS",
    "BackoffPolicy",
    "Clock",
    "ConnectionLifecycle",
    "Edge",
    "Effects",
    "EventLog",
    "ManualClock",
    "Misconfiguration",
    "Snapshot",
    "State",
    "Supervisor",
    "SystemClock",
    "TransitionEvent",
    "Trigger",
    "describe",
    "with_timeout",
]
