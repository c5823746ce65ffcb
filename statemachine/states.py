"""The states of a connection to Temporal."""

from __future__ import annotations

import enum


class State(enum.Enum):
    """Where the connection to Temporal is in its life.

    Workers run and workflow creators are injected exactly while the state is ``CONNECTED``;
    everything else about the connection (status, health, fail-fast answers) derives from this.
    """

    #: Never connected yet, or the last first-time dial failed; a retry is scheduled.
    DISCONNECTED = "DISCONNECTED"
    #: A first-time dial (connect + namespace check) is in flight.
    CONNECTING = "CONNECTING"
    #: Client verified, three workers running, creators injected.
    CONNECTED = "CONNECTED"
    #: Was connected, then lost Temporal; workers stopped, creators withdrawn, a retry is scheduled.
    UNHEALTHY = "UNHEALTHY"
    #: A re-dial after a loss is in flight.
    RECONNECTING = "RECONNECTING"
    #: Shut down for good; nothing runs and no trigger is accepted.
    STOPPED = "STOPPED"

    @property
    def dialling(self) -> bool:
        """True while an attempt (dial + verify) is in flight."""
        return self in (State.CONNECTING, State.RECONNECTING)

    @property
    def waiting_to_retry(self) -> bool:
        """True while a retry is scheduled and nothing is in flight."""
        return self in (State.DISCONNECTED, State.UNHEALTHY)


class Trigger(enum.StrEnum):
    """What moves the machine from one state to another (statemachine.table.TRANSITIONS).

    A StrEnum: ``transitions`` binds each value as a method of the lifecycle, and an event's
    trigger still compares equal to its name (``event.trigger == "start"``).
    """

    START = "start"
    CONNECT_OK = "connect_ok"
    CONNECT_FAILED = "connect_failed"
    HEALTH_FAILED = "health_failed"
    RECONNECT = "reconnect"
    RECONNECT_OK = "reconnect_ok"
    RECONNECT_FAILED = "reconnect_failed"
    STOP = "stop"

    @property
    def dials(self) -> bool:
        """An attempt (dial + verify) begins."""
        return self in (Trigger.START, Trigger.RECONNECT)

    @property
    def succeeded(self) -> bool:
        """An attempt ended CONNECTED."""
        return self in (Trigger.CONNECT_OK, Trigger.RECONNECT_OK)

    @property
    def attempt_failed(self) -> bool:
        """An attempt ended without a connection (a retry is scheduled)."""
        return self in (Trigger.CONNECT_FAILED, Trigger.RECONNECT_FAILED)

    @property
    def failed(self) -> bool:
        """An attempt failed, or a live connection was lost."""
        return self.attempt_failed or self is Trigger.HEALTH_FAILED
