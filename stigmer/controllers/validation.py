"""Input checks shared by the three controllers.

Each check raises `InvalidArgumentError` naming the request field, and runs before anything is
read from Temporal or written to the store. Text is only checked, never changed: what passes
is stored byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from stigmer.errors import InvalidArgumentError
from stigmer.store import Phase, is_valid_id
from stigmer.workflows.limits import TEXT_BUDGET_BYTES, encoded_size

T = TypeVar("T")

MIB = 1024 * 1024
#: Messages, inputs and documents: they travel inside one Temporal payload (2 MiB hard limit).
MAX_TEXT_BYTES = MIB
MAX_AGENT_BYTES = 256
MAX_RUNTIME_ENV_ENTRIES = 100
#: All keys and values together; they ride in the same payload as the message.
MAX_RUNTIME_ENV_BYTES = 64 * 1024

# POSIX-style variable names: anything else cannot be exported into an agent's environment.
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def shown(value: object, *, limit: int = 60) -> str:
    """`repr` of a value, cut short: error messages must not echo a megabyte back."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def byte_length(field: str, value: object) -> int:
    """UTF-8 size of a text field; InvalidArgumentError if it is not text or not encodable."""
    if not isinstance(value, str):
        raise InvalidArgumentError(field, f"must be a string, got {type(value).__name__}")
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        # Only reachable from Python callers: protobuf strings are valid UTF-8 by construction.
        raise InvalidArgumentError(field, f"not valid Unicode text (lone surrogate at index {exc.start})") from None


def check_size(field: str, value: object, *, max_bytes: int) -> str:
    size = byte_length(field, value)
    if size > max_bytes:
        raise InvalidArgumentError(field, f"{size} bytes exceeds the limit of {max_bytes} bytes{_mib(max_bytes)}")
    assert isinstance(value, str)  # byte_length checked it
    return value


def check_required(field: str, value: str, *, what: str) -> str:
    if not value.strip():
        raise InvalidArgumentError(field, f"required ({what}); got {'an empty' if not value else 'a blank'} string")
    return value


def check_agent(agent: object) -> str:
    value = check_required("agent", check_size("agent", agent, max_bytes=MAX_AGENT_BYTES), what="the agent name")
    if _CONTROL.search(value):
        raise InvalidArgumentError("agent", f"must not contain control characters, got {shown(value)}")
    return value


def check_message(message: object) -> str:
    value = check_size("message", message, max_bytes=MAX_TEXT_BYTES)
    return check_required("message", value, what="the message to the agent")


def check_runtime_env(runtime_env: Mapping[str, str] | None) -> dict[str, str]:
    """A plain dict copy of the env; InvalidArgumentError naming the offending key."""
    if runtime_env is None:
        return {}
    if not isinstance(runtime_env, Mapping):
        raise InvalidArgumentError("runtime_env", f"must be a map of strings, got {type(runtime_env).__name__}")
    if len(runtime_env) > MAX_RUNTIME_ENV_ENTRIES:
        raise InvalidArgumentError(
            "runtime_env", f"{len(runtime_env)} entries, at most {MAX_RUNTIME_ENV_ENTRIES} allowed"
        )
    env: dict[str, str] = {}
    total = 0
    for key, value in runtime_env.items():
        if not isinstance(key, str) or not _ENV_KEY.fullmatch(key):
            printable = isinstance(key, str) and len(key) <= 60 and not _CONTROL.search(key)
            raise InvalidArgumentError(
                f"runtime_env[{key if printable else shown(key)}]",
                "a variable name must be letters, digits and '_', not starting with a digit",
            )
        field = f"runtime_env[{key}]"
        total += len(key) + byte_length(field, value)
        assert isinstance(value, str)
        if "\x00" in value:
            raise InvalidArgumentError(field, "must not contain NUL characters (an environment cannot hold them)")
        env[key] = value
    if total > MAX_RUNTIME_ENV_BYTES:
        raise InvalidArgumentError("runtime_env", f"{total} bytes in all, at most {MAX_RUNTIME_ENV_BYTES} allowed")
    return env


def check_encoded_size(field: str, texts: Iterable[str], *, what: str) -> None:
    """The texts that travel together in one Temporal payload must fit in it once JSON-escaped
    (see stigmer.workflows.limits.encoded_size); else the execution would be stored but could never run."""
    size = sum(encoded_size(text) for text in texts)
    if size > TEXT_BUDGET_BYTES:
        raise InvalidArgumentError(
            field,
            f"{what} take {size} bytes once encoded for Temporal, more than the {TEXT_BUDGET_BYTES} a payload "
            "allows (JSON writes each non-ASCII or control character as a 6-byte \\u escape)",
        )


def check_id(prefix: str, value: object, *, field: str = "id") -> str:
    if not isinstance(value, str) or not is_valid_id(prefix, value):
        raise InvalidArgumentError(
            field, f"must be '{prefix}-' followed by a 26-character ULID (as returned by Create), got {shown(value)}"
        )
    return value


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
MAX_REASON_BYTES = 1024
MAX_REQUESTED_BY_BYTES = 256
ANONYMOUS = "anonymous"


def check_request_id(value: object) -> str:
    """ "" (no deduplication) or a UUID in its usual 8-4-4-4-12 form, returned in lowercase."""
    text = check_size("request_id", value, max_bytes=64)
    if text and not _UUID.fullmatch(text):
        raise InvalidArgumentError(
            "request_id",
            f"must be a UUID such as 3f2b8c1e-5d4a-4f6b-9c7d-2e1f0a9b8c7d (uuid.uuid4()), got {shown(text)}",
        )
    return text.lower()


def check_cancel_request(reason: object, requested_by: object) -> tuple[str, str]:
    """(reason, who): bounded text without control characters (a reason may span lines)."""
    why = check_size("reason", reason, max_bytes=MAX_REASON_BYTES)
    if _CONTROL.search(why.replace("\n", "").replace("\t", "")):
        raise InvalidArgumentError("reason", "must not contain control characters other than newlines and tabs")
    who = check_size("requested_by", requested_by, max_bytes=MAX_REQUESTED_BY_BYTES).strip()
    if _CONTROL.search(who):
        raise InvalidArgumentError("requested_by", f"must not contain control characters, got {shown(who)}")
    return why, who or ANONYMOUS


def check_created_after(created_after: float | None) -> float | None:
    if created_after is None:
        return None
    if isinstance(created_after, bool) or not isinstance(created_after, int | float) or created_after != created_after:
        raise InvalidArgumentError("created_after", f"must be a time, got {shown(created_after)}")
    return float(created_after)


def check_filter_text(field: str, value: object) -> str:
    """An exact-match filter: "" (none) or a short string."""
    return check_size(field, value, max_bytes=MAX_AGENT_BYTES)


def parse_phase(phase: object) -> Phase | None:
    """None (any phase) for "" or UNSPECIFIED; otherwise one of the phase names, case-insensitive."""
    if not isinstance(phase, str):
        raise InvalidArgumentError("phase", f"must be a string, got {type(phase).__name__}")
    name = phase.strip().upper()
    if not name or name == "EXECUTION_PHASE_UNSPECIFIED":
        return None
    try:
        return Phase(name)
    except ValueError:
        expected = ", ".join(p.value for p in Phase)
        raise InvalidArgumentError("phase", f"unknown phase {shown(phase)} (expected one of {expected})") from None


def check_page_size(page_size: object) -> int:
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 0:
        raise InvalidArgumentError("page_size", f"must be 0 (the default) or a positive number, got {shown(page_size)}")
    return page_size


def list_page(call: Callable[[], T]) -> T:
    """Run a store listing whose arguments were checked; its only ValueError is a bad page token."""
    try:
        return call()
    except ValueError as exc:
        raise InvalidArgumentError("page_token", str(exc).removeprefix("page_token is ").strip()) from None


def _mib(limit: int) -> str:
    return f" ({limit // MIB} MiB)" if limit % MIB == 0 else ""
