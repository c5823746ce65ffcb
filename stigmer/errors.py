"""Every error stigmer raises on purpose, under one root, and the process exit codes.

A leaf module: it imports nothing from stigmer, so every layer may raise and catch these
without an import circle. The gRPC layer (stigmer.server.errors) maps each class to one status
code, which the CLI maps to an :class:`ExitCode` (stigmer.cli.common); anything that is not a
:class:`StigmerError` is a bug, answered INTERNAL with its traceback in the server log only.

::

    StigmerError
     ├── ConfigError (ValueError)             settings that cannot work: the server exits 78
     ├── InvalidArgumentError (ValueError)    a request field is malformed (.field, .reason)
     ├── FailedPreconditionError              well-formed, but it cannot run now (an invalid workflow)
     ├── StoreError                           what the store refused or could not do
     │    ├── NotFoundError (LookupError)     no record with that id or name (.kind, .id)
     │    ├── AlreadyExistsError              a record with that id or name is already stored
     │    └── DatabaseError                   the database cannot be used (file, schema, permissions)
     │         ├── StoreFullError             its disk is full; the write was rolled back
     │         └── DatabaseUnavailableError   PostgreSQL did not answer: nothing was done, retry later
     ├── TemporalUnavailableError             Temporal did not answer: nothing was done, retry later
     │    (stigmer.temporal.diagnose adds the dial's kinds: accepted-then-closed, misconfigured)
     ├── ServerUnreachableError               the stigmer server itself did not answer (.address)
     ├── UnauthenticatedError                 the server refused the client's token or certificate
     ├── WaitTimeoutError (TimeoutError)      a client's wait ran out before what it waited for
     └── PhaseNotReachedError                 the execution ended in another phase (.execution)

Messages are written for whoever must act: they name the field, record or file and say what
to do, and never carry a traceback.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType

#: The exact message of every UNAVAILABLE answer while Temporal is unreachable (the log and CLI
#: contract; stigmer.contract re-exports it).
UNAVAILABLE_MESSAGE = "Temporal workflow engine is unavailable. Please try again later."


class ExitCode(enum.IntEnum):
    """What ``stigmer`` exits with (sysexits.h where one fits): what a supervisor or script acts on."""

    OK = 0
    #: The command ran and the answer is "no": an execution FAILED, a document is invalid, an RPC refused.
    ERROR = 1
    #: Bad command line (click's own code).
    USAGE = 2
    #: ``server status`` / ``server wait``: the server answers but is not CONNECTED to Temporal.
    NOT_CONNECTED = 3
    #: EX_UNAVAILABLE: the stigmer server cannot be reached, its listener could not be opened,
    #: or ``--exit-after-outage`` ran out.
    UNAVAILABLE = 69
    #: EX_SOFTWARE: a bug.
    SOFTWARE = 70
    #: EX_TEMPFAIL: Temporal is unavailable (or the server did not answer in time): try again later.
    #: Also ``server start`` on a data dir another server holds, and ``server stop`` that timed out.
    TEMPFAIL = 75
    #: EX_CONFIG: the settings, the data dir or its database cannot work.
    CONFIG = 78
    #: 128 + SIGINT: ``server start`` got a second Ctrl+C (or SIGTERM) and exited at once.
    INTERRUPTED = 130


class StigmerError(Exception):
    """The root: an error stigmer raised on purpose, with a message for whoever must act.

    An error the client read from the server's answer also says how it came: ``code`` (the gRPC
    status code's name), ``details`` (the server's own text) and ``trailing`` (its metadata).
    """

    code: str = ""
    details: str = ""
    trailing: Mapping[str, str] = MappingProxyType({})


class ConfigError(StigmerError, ValueError):
    """A setting (flag, environment variable, file) that cannot work; the message names it."""


class InvalidArgumentError(StigmerError, ValueError):
    """A request field is malformed; ``field`` names it ("message", "runtime_env[FOO]", "page_token")."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class FailedPreconditionError(StigmerError):
    """The request is well-formed but the system is not in a state to run it (an invalid workflow)."""


class StoreError(StigmerError):
    """What the store refused or could not do."""


class NotFoundError(StoreError, LookupError):
    """No record of ``kind`` with that id or name (``id`` as shown to the user, quoted or not)."""

    def __init__(self, kind: str, id: str, *, message: str | None = None) -> None:
        super().__init__(message or f"{kind} {id} not found")
        self.kind = kind
        self.id = id


class AlreadyExistsError(StoreError):
    """A record with that id, or a workflow with that name, is already stored."""


class DatabaseError(StoreError):
    """The database cannot be used: corrupt or foreign file, newer schema, read-only, closed.

    The message always names the file and says what the operator should do; the store never
    "repairs" a file by resetting it.
    """


class StoreFullError(DatabaseError):
    """The disk holding the database is full; the write was rolled back. Free space and retry."""


class DatabaseUnavailableError(DatabaseError):
    """The database server did not answer (down, restarting, unreachable): retry later."""


class TemporalUnavailableError(StigmerError):
    """Temporal did not answer in time, or answered UNAVAILABLE: nothing was done, try again later.

    The message says what failed; a request refused for it is always answered with
    :data:`UNAVAILABLE_MESSAGE` (the default message). ``state`` (the connection state's name)
    and ``retry_after`` (seconds until the next connection attempt) go with that answer as
    trailing metadata when the controller that refused knew them; ``cause`` is for the log.
    """

    def __init__(
        self, message: str = UNAVAILABLE_MESSAGE, *, state: str = "", retry_after: float = 1.0, cause: str = ""
    ) -> None:
        super().__init__(message)
        self.state = state
        self.retry_after = retry_after
        self.cause = cause


class ServerUnreachableError(StigmerError):
    """The stigmer server at ``address`` did not answer (not running, wrong address, network)."""

    def __init__(self, message: str, *, address: str) -> None:
        super().__init__(message)
        self.address = address


class UnauthenticatedError(StigmerError):
    """The server refused the client's credentials (STIGMER_AUTH_TOKEN, or the TLS setup)."""


class WaitTimeoutError(StigmerError, TimeoutError):
    """A client's wait (for the connection, for a phase) ran out of time."""


class PhaseNotReachedError(StigmerError):
    """The execution ended in a phase other than the ones waited for; ``execution`` is its last state."""

    def __init__(self, message: str, *, execution: object) -> None:
        super().__init__(message)
        self.execution = execution


__all__ = [
    "UNAVAILABLE_MESSAGE",
    "AlreadyExistsError",
    "ConfigError",
    "DatabaseError",
    "DatabaseUnavailableError",
    "ExitCode",
    "FailedPreconditionError",
    "InvalidArgumentError",
    "NotFoundError",
    "PhaseNotReachedError",
    "ServerUnreachableError",
    "StigmerError",
    "StoreError",
    "StoreFullError",
    "TemporalUnavailableError",
    "UnauthenticatedError",
    "WaitTimeoutError",
]
