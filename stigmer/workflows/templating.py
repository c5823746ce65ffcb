"""Run-time `${ref}` substitution for workflow documents. Pure and deterministic (it runs in
the workflow sandbox); `workflowdoc` checks statically that every reference can resolve.

A string that is exactly one reference takes the referenced value as is (keeping its JSON type);
otherwise each referenced value is embedded as text: strings as they are, anything else as
compact JSON. Paths walk objects by key and lists by index (``${cfg.items.0}``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, TypeAlias

from stigmer.errors import StigmerError

JSONValue: TypeAlias = Any

# ``${`` + anything but braces + ``}``; what may stand inside is checked by `workflowdoc`.
REFERENCE = re.compile(r"\$\{([^{}]*)\}")


class UnresolvedReference(StigmerError, LookupError):
    """A `${ref}` names nothing at run time (e.g. a key missing from the execution's input)."""


def make_scope(
    *, input: Mapping[str, JSONValue], values: Mapping[str, JSONValue], outputs: Mapping[str, JSONValue]
) -> dict[str, JSONValue]:
    """The names references resolve against: set keys, ``input`` and ``tasks.<name>.output``."""
    scope: dict[str, JSONValue] = dict(values)
    scope["input"] = dict(input)
    scope["tasks"] = {name: {"output": output} for name, output in outputs.items()}
    return scope


def resolve(ref: str, scope: Mapping[str, JSONValue]) -> JSONValue:
    """The value `ref` (the text inside ``${}``) names in `scope`; raises UnresolvedReference."""
    current: Any = scope
    walked: list[str] = []
    for part in ref.split("."):
        walked.append(part)
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            raise UnresolvedReference(f"'${{{ref}}}': {'.'.join(walked)} is not defined")
    return current


def render(template: str, scope: Mapping[str, JSONValue]) -> JSONValue:
    """Substitute references in one string (see the module docs for the typing rule)."""
    whole = REFERENCE.fullmatch(template)
    if whole:
        return resolve(whole.group(1), scope)

    def embed(match: re.Match[str]) -> str:
        value = resolve(match.group(1), scope)
        return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))

    return REFERENCE.sub(embed, template)


def render_text(template: str, scope: Mapping[str, JSONValue]) -> str:
    """Like `render`, but always text (for agent messages and env values)."""
    value = render(template, scope)
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def render_value(value: JSONValue, scope: Mapping[str, JSONValue]) -> JSONValue:
    """Substitute references in every string inside a JSON value."""
    if isinstance(value, str):
        return render(value, scope)
    if isinstance(value, list):
        return [render_value(item, scope) for item in value]
    if isinstance(value, dict):
        return {key: render_value(item, scope) for key, item in value.items()}
    return value
