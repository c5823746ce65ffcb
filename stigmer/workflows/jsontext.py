"""JSON text held to what every layer can carry: no duplicate keys, no NaN or Infinity, no lone
surrogates, numbers within range. Pure (json, math, re); runs in the workflow sandbox too.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, TypeAlias

JSONValue: TypeAlias = Any

# JSON may spell half of a surrogate pair alone ("\\ud800"); decoded, that is a string no UTF-8
# text can hold (the store, protobuf and Temporal payloads all refuse it). Proper pairs decode to
# one code point, so any surrogate left in a decoded string is a lone one.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")
LONE_SURROGATE_ERROR = "contains a \\u escape of a lone surrogate (\\ud800-\\udfff without its pair): not valid text"


class DuplicateKey(ValueError):
    pass


def has_lone_surrogate(value: Any) -> bool:
    """True if a string anywhere in a decoded JSON value (keys too) holds a lone surrogate."""
    pending = [value]  # a loop, not recursion: json.loads accepts nesting deeper than our stack
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if LONE_SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def json_value_error(exc: ValueError) -> str:
    # "Exceeds the limit (4300 digits) for integer string conversion: value has 5000 digits; use
    # sys.set_int_max_str_digits() ..." -- the advice after ";" is for Python programmers.
    return str(exc).split(";")[0]


def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKey(f"duplicate key {key!r} in an object")
        result[key] = value
    return result


def no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not allowed", name, 0)


def finite_float(text: str) -> float:
    # 1e999 would decode to infinity and come back out in the output as `Infinity`, which is not JSON.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:30]} is out of range")
    return value


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def parse_input(text: str) -> dict[str, JSONValue]:
    """An execution's input: a JSON object, or empty text for no input. Raises ValueError."""
    if not text.strip():
        return {}
    try:
        value = json.loads(text, parse_constant=no_constant, parse_float=finite_float)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"input: not valid JSON: {exc}") from None
    except ValueError as exc:  # a number out of float range, or beyond Python's digit limit for int()
        raise ValueError(f"input: not valid JSON: {json_value_error(exc)}") from None
    if not isinstance(value, dict):
        raise ValueError(f"input: must be a JSON object, got {type_name(value)}")
    if has_lone_surrogate(value):
        raise ValueError(f"input: {LONE_SURROGATE_ERROR}")
    return value
