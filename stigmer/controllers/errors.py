"""Errors the controllers raise; the gRPC layer maps each class to one status code.

Messages are written for the person who made the request: they name the field or record and
say what is wrong, and never carry a traceback. Anything that is not a `ControllerError` is a
bug and is reported as INTERNAL by the server.
"""

from __future__ import annotations

from stigmer.contract import UNAVAILABLE_MESSAGE as UNAVAILABLE_MESSAGE


class ControllerError(Exception):
    """Base class: a request the controller refused, for a reason the caller can act on."""


class InvalidArgument(ControllerError):
    """A request field is malformed; ``field`` names it ("message", "runtime_env[FOO]", "page_token")."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class NotFound(ControllerError):
    """No record with that id (the message names the kind and the id)."""

    def __init__(self, kind: str, id: str) -> None:
        super().__init__(f"{kind} {id} not found")
        self.kind = kind
        self.id = id


class AlreadyExists(ControllerError):
    """A record with that name is already stored."""


class FailedPrecondition(ControllerError):
    """The request is well-formed but the system is not in a state to run it (e.g. an invalid workflow)."""


class Unavailable(ControllerError):
    """Temporal is unreachable: nothing was persisted, so the caller may simply retry later.

    ``state`` is the connection state's name and ``retry_after`` the seconds until the next
    connection attempt; the server sends both as trailing metadata. ``cause`` is for the log only.
    """

    def __init__(self, *, state: str, retry_after: float, cause: str = "") -> None:
        super().__init__(UNAVAILABLE_MESSAGE)
        self.state = state
        self.retry_after = retry_after
        self.cause = cause
