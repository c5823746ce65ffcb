"""Choosing the agent runner: ``--agent-runner`` / ``STIGMER_AGENT_RUNNER`` to an `AgentRunner`.

A setting is either

- ``module:attr`` (``attr`` may be dotted: ``pkg.mod:Outer.make``), imported as it is, or
- a name registered in the entry point group ``stigmer.agent_runners`` (``echo``, the default, is
  stigmer-py's own; a name also works from an install whose metadata predates the group).

What ``attr`` (or an entry point) names may be a class (instantiated with no arguments), a
zero-argument factory (called), or an instance; what that yields must have an ``async def run``
taking the keywords of `AgentRunner.run`. Everything is checked once, at start: every refusal is
a `ConfigError` of one line that names the setting, which ``server start`` logs before it exits 78.
"""

from __future__ import annotations

import importlib
import inspect
import traceback
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import cast

from stigmer.errors import ConfigError
from stigmer.temporal.agents import AgentRunner

SETTING = "STIGMER_AGENT_RUNNER / --agent-runner"
GROUP = "stigmer.agent_runners"
#: stigmer-py's own runners, also registered under GROUP in pyproject.toml.
BUILTIN = {"echo": "stigmer.temporal.agents:EchoAgentRunner"}
#: What `run` is called with (all keywords).
RUN_KEYWORDS = ("agent", "message", "runtime_env", "heartbeat")


@dataclass(frozen=True)
class ChosenRunner:
    """The runner a setting named, and where it came from (for the start-up log line)."""

    runner: AgentRunner
    setting: str
    target: str

    def describe(self) -> str:
        return self.setting if self.setting == self.target else f"{self.setting} ({self.target})"


def load_agent_runner(setting: str) -> ChosenRunner:
    """The runner ``setting`` names (see the module docstring); `ConfigError` if there is none."""
    spec = setting.strip()
    if not spec:
        raise ConfigError(f"{SETTING} is empty: give a runner's name ({_known()}) or module:attr")
    if ":" in spec:
        target, where = spec, repr(spec)
    else:
        target = _entry_point_target(spec)
        where = f"{spec!r} (entry point {target!r})"
    _check_syntax(target, where)
    return ChosenRunner(_build(_resolve(target, where), target, where), spec, target)


def known_names() -> list[str]:
    """The runner names a setting may use: the built-in ones and every installed entry point."""
    return sorted(set(BUILTIN) | {ep.name for ep in entry_points(group=GROUP)})


def _known() -> str:
    return ", ".join(known_names())


def _fail(where: str, problem: str) -> ConfigError:
    return ConfigError(f"{SETTING} {where}: {problem}")


def _check_syntax(target: str, where: str) -> None:
    module, _, attr = target.partition(":")
    if not all(part and all(piece.isidentifier() for piece in part.split(".")) for part in (module, attr)):
        raise _fail(
            where,
            f"must look like module:attr (e.g. mypackage.runners:MyRunner) or be a runner's name ({_known()})",
        )


def _entry_point_target(name: str) -> str:
    found: list[EntryPoint] = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    targets = sorted({f"{ep.module}:{ep.attr}" if ep.attr else ep.value for ep in found})
    if len(targets) > 1:
        owners = ", ".join(f"{ep.value} ({ep.dist.name if ep.dist else '?'})" for ep in found)
        raise _fail(repr(name), f"is registered more than once in {GROUP}: {owners}; give module:attr instead")
    if targets:
        return targets[0]
    if name in BUILTIN:
        return BUILTIN[name]
    raise _fail(
        repr(name),
        f"no runner of that name in the entry point group {GROUP} (known: {_known()}); "
        "for a runner of your own give module:attr",
    )


def _resolve(target: str, where: str) -> object:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == module_name or module_name.startswith(missing + "."):
            raise _fail(where, f"no module named {missing!r} (is its directory on PYTHONPATH?)") from None
        raise _fail(where, f"importing {module_name!r} failed: {_one_line(exc)}") from None
    except Exception as exc:  # a user's module: whatever it raises is a setting to fix, in one line
        raise _fail(where, f"importing {module_name!r} failed: {_one_line(exc)}") from None
    value: object = module
    owner = f"module {module_name!r}"
    walked: list[str] = []
    for piece in attr.split("."):
        if not hasattr(value, piece):
            raise _fail(where, f"{owner} has no attribute {piece!r}{_hint(module, value)}")
        value = getattr(value, piece)
        walked.append(piece)
        owner = repr(f"{module_name}:{'.'.join(walked)}")
    return value


def _build(value: object, target: str, where: str) -> AgentRunner:
    name = target.rpartition(":")[2]
    if inspect.isclass(value):
        made = _call(value, f"{name}()", where, hint=" (a runner class is instantiated with no arguments)")
        return _checked(made, f"{name}()", where)
    if _run_of(value) is not None:
        return _checked(value, name, where)
    if inspect.iscoroutinefunction(value):
        raise _fail(where, f"{name} is an async function: give a class, a plain zero-argument factory or an instance")
    if callable(value):
        made = _call(value, f"{name}()", where, hint=" (a factory is called with no arguments)")
        return _checked(made, f"{name}()", where)
    raise _fail(
        where,
        f"{name} is {_short(value)}: not a runner (no run() method), nor a class or factory that makes one",
    )


def _call(factory: object, label: str, where: str, *, hint: str) -> object:
    assert callable(factory)
    try:
        return factory()
    except ConfigError as exc:  # the runner's own refusal (a missing variable): its words
        raise _fail(where, f"{label} refused: {exc}") from None
    except TypeError as exc:
        raise _fail(where, f"{label} failed: {_one_line(exc)}{hint}") from None
    except Exception as exc:
        raise _fail(where, f"{label} failed: {_one_line(exc)}") from None


def _checked(value: object, label: str, where: str) -> AgentRunner:
    run = _run_of(value)
    if run is None:
        raise _fail(where, f"{label} gave {_short(value)}, which has no run() method")
    if not inspect.iscoroutinefunction(run):
        raise _fail(where, f"{label}: run() must be a coroutine method (async def run(...)), it is not")
    try:
        signature = inspect.signature(run)
    except (TypeError, ValueError):  # no signature to read (a C extension): trust it
        return cast(AgentRunner, value)
    try:
        signature.bind(**dict.fromkeys(RUN_KEYWORDS))
    except TypeError as exc:
        raise _fail(
            where,
            f"{label}: run{signature} cannot be called as run({', '.join(k + '=...' for k in RUN_KEYWORDS)}): {exc}",
        ) from None
    return cast(AgentRunner, value)


def _run_of(value: object) -> object | None:
    if inspect.isclass(value) or inspect.ismodule(value):
        return None
    run = getattr(value, "run", None)
    return run if callable(run) else None


def _hint(module: object, value: object) -> str:
    if value is not module:
        return ""
    candidates = sorted(
        n for n, v in vars(module).items() if not n.startswith("_") and inspect.isclass(v) and _has_async_run(v)
    )
    return f" (runner classes there: {', '.join(candidates)})" if candidates else ""


def _has_async_run(cls: type) -> bool:
    return inspect.iscoroutinefunction(getattr(cls, "run", None))


def _short(value: object) -> str:
    text = repr(value)
    return f"{text[:60]}... ({type(value).__name__})" if len(text) > 60 else f"{text} ({type(value).__name__})"


def _one_line(exc: BaseException) -> str:
    """``Type: message (file:line)``, one line: where a user's code raised, without a traceback."""
    message = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    # The innermost frame outside this module and importlib; a SyntaxError's message has its place already.
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if f.filename != __file__ and "importlib" not in f.filename
    ]
    if frames and not isinstance(exc, SyntaxError):
        text += f" ({frames[-1].filename}:{frames[-1].lineno})"
    return text
