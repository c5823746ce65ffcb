"""The create flow built on the connection's availability (ports.Availability): require a creator
(after at most one fast reconnect attempt), start, and remove the record if the start fails."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from loguru import logger

from stigmer.errors import TemporalUnavailableError

from .ports import Availability, Starter

C = TypeVar("C")


def unavailable(availability: Availability, *, cause: str = "") -> TemporalUnavailableError:
    state, retry_after = availability.unavailable_details()
    return TemporalUnavailableError(state=state, retry_after=retry_after, cause=cause)


async def require(
    current: Callable[[], C | None],
    availability: Availability,
    *,
    what: str,
    refused: Callable[[], None] | None = None,
) -> C:
    """The injected creator, after at most one fast reconnect attempt; else TemporalUnavailableError.

    `current` re-reads the controller's slot: a successful attempt injects a new creator.
    `refused` is told of each refusal (the create fast-fail counter).
    """
    creator = current()
    if creator is None:
        await availability.wait_available()
        creator = current()
    if creator is None:
        error = unavailable(availability, cause=f"no {what}: not connected to Temporal")
        # DEBUG: during an outage every request lands here; the connection logs the outage itself.
        logger.debug("Refused a request: Temporal is unavailable", what=what, state=error.state)
        if refused is not None:
            refused()
        raise error
    return creator


async def start_or_forget(
    starter: Starter,
    *,
    id: str,
    timeout: float,  # noqa: ASYNC109
    delete: Callable[[str], bool],
    availability: Availability,
) -> None:
    """Start the workflow of a just-stored record; if that fails, delete the record, then raise.

    The caller has not returned the id yet, so deleting keeps the promise that every id a
    client saw reaches a terminal phase. Should the start have reached Temporal after all (a
    reply lost to a timeout), the workflow's first activity finds no record and fails for good.
    """
    try:
        await starter.start(id, timeout=timeout)
    except TemporalUnavailableError as err:
        _forget(delete, id, err)
        availability.report_unavailable(err, client=starter.client)
        raise unavailable(availability, cause=str(err)) from err
    except BaseException as err:  # cancelled too: the caller never gets the id
        _forget(delete, id, err)
        raise


def _forget(delete: Callable[[str], bool], id: str, cause: BaseException) -> None:
    logger.warning("Could not start {}; removing its record ({})", id, _one_line(cause))
    try:
        delete(id)
    except Exception as exc:  # the start error is the one to report; this one goes to the log
        logger.opt(exception=exc).error("Could not remove the record of {} after a failed start", id)


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
