"""Workflow documents: parsing and validation (substitution is stigmer.workflows.templating). Pure, no I/O.

A document is JSON text::

    {"name": "greet", "description": "optional",
     "tasks": [{"name": "t1", "kind": "set", "values": {"k": "v"}},
               {"name": "t2", "kind": "wait", "seconds": 0.5},
               {"name": "t3", "kind": "agent", "agent": "echo", "message": "hello ${k} ${input.user}",
                "runtime_env": {"STIGMER_AGENT_DELAY_SECONDS": "1"}}]}

Task kinds: ``set`` merges ``values`` into the workflow's values; ``wait`` sleeps ``seconds``
(0..86400, durable); ``agent`` runs an agent execution with ``message`` (and optional
``runtime_env``) and its replies become the task's output.

References ``${...}`` may appear in string values of ``set`` tasks, in ``message`` and in
``runtime_env`` values. Each must name ``input`` or ``input.<path>`` (the execution's input),
a key set by an *earlier* ``set`` task (optionally followed by ``.<path>`` into its value), or
``tasks.<earlier task>.output``. How they are substituted at run time: see `templating`.

This module runs inside the Temporal workflow sandbox: it must stay deterministic.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from stigmer.errors import StigmerError
from stigmer.workflows import jsontext
from stigmer.workflows.jsontext import JSONValue
from stigmer.workflows.limits import TEXT_BUDGET_BYTES, encoded_size
from stigmer.workflows.templating import REFERENCE

MAX_DOCUMENT_BYTES = 1024 * 1024
#: The document travels to the validation worker and, with the input, to every execution (see
#: limits.encoded_size): three quarters of a payload for it leaves the input a quarter or more.
MAX_DOCUMENT_PAYLOAD_BYTES = TEXT_BUDGET_BYTES * 3 // 4
MAX_NAME_LENGTH = 100
MAX_WAIT_SECONDS = 86400
MAX_VALUE_DEPTH = 32
# A validation result travels as one Temporal payload and is stored with the workflow: however
# hostile the document, it stays small (a first batch of problems is what a person can act on).
MAX_ERRORS = 50
MAX_ERROR_LENGTH = 300
KINDS = ("agent", "set", "wait")
RESERVED_KEYS = ("input", "tasks")

_NAME = re.compile(r"[A-Za-z0-9_-]+")
_REF = REFERENCE
_REF_PATH = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
_TOP_FIELDS = ("name", "description", "tasks")
_TASK_FIELDS: dict[str, tuple[str, ...]] = {
    "set": ("name", "kind", "values"),
    "wait": ("name", "kind", "seconds"),
    "agent": ("name", "kind", "agent", "message", "runtime_env"),
}


@dataclass(frozen=True)
class SetTask:
    name: str
    values: dict[str, JSONValue]
    kind: str = field(default="set", init=False)


@dataclass(frozen=True)
class WaitTask:
    name: str
    seconds: float
    kind: str = field(default="wait", init=False)


@dataclass(frozen=True)
class AgentTask:
    name: str
    agent: str
    message: str
    runtime_env: dict[str, str]
    kind: str = field(default="agent", init=False)


Task: TypeAlias = SetTask | WaitTask | AgentTask


@dataclass(frozen=True)
class WorkflowDocument:
    name: str
    description: str
    tasks: tuple[Task, ...]


class InvalidDocument(StigmerError, ValueError):
    """`parse` was given a document that `validate` rejects; `errors` says why."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


# ---------------------------------------------------------------------------------------------
# validation


def validate(document: str | bytes) -> list[str]:
    """All problems with `document`, each ``"<json path>: <what is wrong>"``; empty if valid.

    At most `MAX_ERRORS` lines of at most `MAX_ERROR_LENGTH` characters: the last line says how
    many more problems there were.
    """
    return _capped(_problems(document))


def _capped(errors: list[str]) -> list[str]:
    lines = [e if len(e) <= MAX_ERROR_LENGTH else e[: MAX_ERROR_LENGTH - 3] + "..." for e in errors[:MAX_ERRORS]]
    if len(errors) > MAX_ERRORS:
        lines[-1] = f"... and {len(errors) - MAX_ERRORS + 1} more problems"
    return lines


def _problems(document: str | bytes) -> list[str]:
    data, errors = _load(document)
    if errors:
        return errors
    if not isinstance(data, dict):
        return [f"document: must be a JSON object, got {jsontext.type_name(data)}"]
    _check_unknown_fields(data, _TOP_FIELDS, "document", errors)
    _check_name(data.get("name"), "name", "workflow", errors)
    if "description" in data and not isinstance(data["description"], str):
        errors.append(f"description: must be a string, got {jsontext.type_name(data['description'])}")
    tasks = data.get("tasks")
    if tasks is None:
        errors.append("tasks: required (a non-empty list of tasks)")
    elif not isinstance(tasks, list):
        errors.append(f"tasks: must be a list, got {jsontext.type_name(tasks)}")
    elif not tasks:
        errors.append("tasks: must contain at least one task")
    else:
        _check_tasks(tasks, errors)
    return errors


def parse(document: str | bytes) -> WorkflowDocument:
    """The document as typed tasks; raises `InvalidDocument` if `validate` finds any problem."""
    errors = validate(document)
    if errors:
        raise InvalidDocument(errors)
    data, _ = _load(document)
    tasks: list[Task] = []
    for raw in data["tasks"]:
        kind = raw["kind"]
        if kind == "set":
            tasks.append(SetTask(name=raw["name"], values=dict(raw["values"])))
        elif kind == "wait":
            tasks.append(WaitTask(name=raw["name"], seconds=float(raw["seconds"])))
        else:
            tasks.append(
                AgentTask(
                    name=raw["name"],
                    agent=raw["agent"],
                    message=raw["message"],
                    runtime_env=dict(raw.get("runtime_env", {})),
                )
            )
    return WorkflowDocument(name=data["name"], description=data.get("description", ""), tasks=tuple(tasks))


def _load(document: str | bytes) -> tuple[Any, list[str]]:
    if isinstance(document, bytes):
        size = len(document)
        if size > MAX_DOCUMENT_BYTES:
            return None, [_size_error(size)]
        try:
            document = document.decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, [f"document: not valid UTF-8 ({exc.reason} at byte {exc.start})"]
    else:
        # Cheap bound first: a str never encodes to fewer bytes than it has characters.
        if len(document) > MAX_DOCUMENT_BYTES or len(document.encode("utf-8")) > MAX_DOCUMENT_BYTES:
            return None, [_size_error(len(document.encode("utf-8")))]
    if (encoded := encoded_size(document)) > MAX_DOCUMENT_PAYLOAD_BYTES:
        return None, [_payload_error(encoded)]
    if not document.strip():
        return None, ["document: empty (expected a JSON object)"]
    try:
        data = json.loads(document, object_pairs_hook=jsontext.no_duplicates, parse_constant=jsontext.no_constant)
    except jsontext.DuplicateKey as exc:
        return None, [f"document: {exc}"]
    except json.JSONDecodeError as exc:
        return None, [f"document: not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})"]
    except ValueError as exc:  # a number beyond Python's digit limit for int()
        return None, [f"document: not valid JSON: {jsontext.json_value_error(exc)}"]
    except RecursionError:
        return None, ["document: nested too deeply"]
    if jsontext.has_lone_surrogate(data):
        return None, [f"document: {jsontext.LONE_SURROGATE_ERROR}"]
    return data, []


def too_large(document: str) -> bool:
    """True if `validate` would refuse the document for its size alone: it is then refused without
    being sent to the validation worker, which it would not reach."""
    return len(document.encode("utf-8")) > MAX_DOCUMENT_BYTES or encoded_size(document) > MAX_DOCUMENT_PAYLOAD_BYTES


def _payload_error(size: int) -> str:
    return (
        f"document: {size} bytes once encoded for Temporal exceeds the limit of {MAX_DOCUMENT_PAYLOAD_BYTES} "
        "bytes (JSON writes each non-ASCII or control character as a 6-byte \\u escape)"
    )


def _size_error(size: int) -> str:
    return f"document: {size} bytes exceeds the limit of {MAX_DOCUMENT_BYTES} bytes (1 MiB)"


def _check_unknown_fields(obj: dict[str, Any], allowed: tuple[str, ...], path: str, errors: list[str]) -> None:
    for key in obj:
        if key not in allowed:
            where = f"{path}.{key}" if path != "document" else key
            errors.append(f"{where}: unknown field (expected {', '.join(allowed)})")


def _check_name(value: Any, path: str, what: str, errors: list[str]) -> bool:
    if value is None:
        errors.append(f"{path}: required (the {what} name)")
    elif not isinstance(value, str):
        errors.append(f"{path}: must be a string, got {jsontext.type_name(value)}")
    elif not value:
        errors.append(f"{path}: must not be empty")
    elif len(value) > MAX_NAME_LENGTH:
        errors.append(f"{path}: {len(value)} characters, at most {MAX_NAME_LENGTH} allowed")
    elif not _NAME.fullmatch(value):
        errors.append(f"{path}: {value!r} may contain only letters, digits, '-' and '_'")
    else:
        return True
    return False


@dataclass
class _Context:
    """What a task may refer to: the keys and task names defined before it."""

    keys: set[str] = field(default_factory=set)
    earlier_tasks: set[str] = field(default_factory=set)
    all_tasks: set[str] = field(default_factory=set)


def _check_tasks(tasks: list[Any], errors: list[str]) -> None:
    ctx = _Context()
    first_use: dict[str, int] = {}
    for i, task in enumerate(tasks):
        if isinstance(task, dict) and isinstance(task.get("name"), str):
            first_use.setdefault(task["name"], i)
    ctx.all_tasks = set(first_use)
    for i, task in enumerate(tasks):
        path = f"tasks[{i}]"
        if not isinstance(task, dict):
            errors.append(f"{path}: must be an object, got {jsontext.type_name(task)}")
            continue
        name = task.get("name")
        if _check_name(name, f"{path}.name", "task", errors) and first_use[str(name)] != i:
            first = first_use[str(name)]
            errors.append(f"{path}.name: duplicate task name {name!r} (first used by tasks[{first}])")
        kind = task.get("kind")
        if kind is None:
            errors.append(f"{path}.kind: required (one of {', '.join(KINDS)})")
        elif not isinstance(kind, str) or kind not in KINDS:
            shown = repr(kind) if isinstance(kind, str) else jsontext.type_name(kind)
            errors.append(f"{path}.kind: unknown kind {shown} (expected one of {', '.join(KINDS)})")
        else:
            _check_unknown_fields(task, _TASK_FIELDS[kind], path, errors)
            if kind == "set":
                _check_set(task, path, ctx, errors)
            elif kind == "wait":
                _check_wait(task, path, errors)
            else:
                _check_agent(task, path, ctx, errors)
        if isinstance(name, str):
            ctx.earlier_tasks.add(name)


def _check_set(task: dict[str, Any], path: str, ctx: _Context, errors: list[str]) -> None:
    values = task.get("values")
    if values is None:
        errors.append(f"{path}.values: required (an object of keys to set)")
        return
    if not isinstance(values, dict):
        errors.append(f"{path}.values: must be an object, got {jsontext.type_name(values)}")
        return
    if not values:
        errors.append(f"{path}.values: must set at least one key")
    for key, value in values.items():
        key_path = f"{path}.values.{key}"
        if not key or len(key) > MAX_NAME_LENGTH or not _NAME.fullmatch(key):
            errors.append(f"{path}.values: key {key!r} must be 1-{MAX_NAME_LENGTH} letters, digits, '-' or '_'")
        elif key in RESERVED_KEYS:
            errors.append(f"{key_path}: {key!r} is reserved (it names the {key} scope)")
        _check_value_refs(value, key_path, ctx, errors, depth=0)
    # Keys become visible only to later tasks, so a set cannot refer to its own keys.
    ctx.keys.update(k for k in values if k not in RESERVED_KEYS)


def _check_wait(task: dict[str, Any], path: str, errors: list[str]) -> None:
    seconds = task.get("seconds")
    if seconds is None:
        errors.append(f"{path}.seconds: required (a number of seconds, 0 to {MAX_WAIT_SECONDS})")
    elif isinstance(seconds, bool) or not isinstance(seconds, int | float):
        errors.append(f"{path}.seconds: must be a number, got {jsontext.type_name(seconds)}")
    elif not math.isfinite(seconds) or not 0 <= seconds <= MAX_WAIT_SECONDS:
        errors.append(f"{path}.seconds: {seconds} is out of range (0 to {MAX_WAIT_SECONDS})")


def _check_agent(task: dict[str, Any], path: str, ctx: _Context, errors: list[str]) -> None:
    _check_name(task.get("agent"), f"{path}.agent", "agent", errors)
    message = task.get("message")
    if message is None:
        errors.append(f"{path}.message: required (the text sent to the agent)")
    elif not isinstance(message, str):
        errors.append(f"{path}.message: must be a string, got {jsontext.type_name(message)}")
    elif not message.strip():
        errors.append(f"{path}.message: must not be empty")
    else:
        _check_refs(message, f"{path}.message", ctx, errors)
    env = task.get("runtime_env")
    if env is None:
        return
    if not isinstance(env, dict):
        errors.append(f"{path}.runtime_env: must be an object of strings, got {jsontext.type_name(env)}")
        return
    for key, value in env.items():
        key_path = f"{path}.runtime_env.{key}"
        if not key:
            errors.append(f"{path}.runtime_env: keys must not be empty")
        if not isinstance(value, str):
            errors.append(f"{key_path}: must be a string, got {jsontext.type_name(value)}")
        else:
            _check_refs(value, key_path, ctx, errors)


def _check_value_refs(value: Any, path: str, ctx: _Context, errors: list[str], *, depth: int) -> None:
    if depth > MAX_VALUE_DEPTH:
        errors.append(f"{path}: nested deeper than {MAX_VALUE_DEPTH} levels")
    elif isinstance(value, str):
        _check_refs(value, path, ctx, errors)
    elif isinstance(value, float) and not math.isfinite(value):
        # 1e999 decodes to infinity, which would come back out in the output as `Infinity`: not JSON.
        errors.append(f"{path}: {value} is out of range (JSON numbers must be finite)")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_value_refs(item, f"{path}[{i}]", ctx, errors, depth=depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_value_refs(item, f"{path}.{key}", ctx, errors, depth=depth + 1)


def _check_refs(text: str, path: str, ctx: _Context, errors: list[str]) -> None:
    if "${" not in text:
        return
    if "${" in _REF.sub("", text):
        errors.append(f"{path}: unterminated reference (a '${{' without its closing '}}')")
    for match in _REF.finditer(text):
        problem = _ref_problem(match.group(1), ctx)
        if problem:
            errors.append(f"{path}: reference '{match.group(0)}' {problem}")


def _ref_problem(ref: str, ctx: _Context) -> str:
    if not _REF_PATH.fullmatch(ref):
        return "is malformed (expected dot-separated names like input.user or tasks.t1.output)"
    head, *rest = ref.split(".")
    if head == "input":
        return ""
    if head == "tasks":
        if len(rest) != 2 or rest[1] != "output":
            return "is malformed (task outputs are referred to as tasks.<task name>.output)"
        task = rest[0]
        if task in ctx.earlier_tasks:
            return ""
        if task in ctx.all_tasks:
            return f"refers to task {task!r}, which does not run before this task"
        return f"refers to unknown task {task!r}"
    if head in ctx.keys:
        return ""
    return (
        f"does not resolve: {head!r} is not set by an earlier set task "
        "(references name input.*, an earlier set key, or tasks.<earlier task>.output)"
    )


@dataclass(frozen=True)
class ValidationResult:
    """Result of the validation workflow: ``{"valid": bool, "errors": [...]}`` on the wire."""

    valid: bool
    errors: list[str] = field(default_factory=list)
