"""Hypothesis strategies for hostile and near-valid API input.

Every text strategy mixes plain random Unicode with fragments known to break naive code (SQL,
NUL and other control characters, quotes, escapes, astral characters, bidi marks, JSON escapes
of lone surrogates) and, now and then, sizes around the limits. "Tame" strategies produce only
values that the API must accept, so a test can insist on success for them.
"""

from __future__ import annotations

import base64
import json
import string
from typing import Any

from hypothesis import strategies as st

from stigmer.store import new_id

MIB = 1024 * 1024
ULID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

NASTY = (
    "", " ", "\t\r\n", "\x00", "\x7f", "\x1b[31m", "'", '"', "\\", "`", "%s", "%n", "{}", "{0}",
    "${x}", "${input.user}", "${", "}", "'); DROP TABLE agent_executions; --", "' OR 1=1 --",
    "/* */", "NULL", "null", "None", "true", "NaN", "-0", "1e999", "\u202e", "\u200b", "\ufeff",
    "\ufffd", "é", "\u0301", "世界", "🚀", "👍🏽", "\U0010ffff", "\\ud800", "\\udc00", "\\u0000",
    "<script>", "../../etc/passwd", "aex-", "wf-", "wex-", "\u2028", "\u00a0",
)  # fmt: skip

nasty = st.sampled_from(NASTY)
# Surrogates are excluded by protobuf itself (strings must be valid UTF-8); everything else goes.
any_char = st.characters(codec="utf-8")
wild_text = st.one_of(
    st.text(any_char, max_size=40),
    st.lists(st.one_of(nasty, st.text(any_char, max_size=8)), max_size=6).map("".join),
)
tame_text = st.text(string.ascii_letters + string.digits + " .,!?-_", min_size=1, max_size=40).filter(
    lambda s: s.strip() != ""
)


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Pick a strategy in proportion to its weight (``st.one_of`` favours its first branches)."""
    return st.sampled_from([strategy for weight, strategy in choices for _ in range(weight)]).flatmap(lambda x: x)


def around(limit: int) -> st.SearchStrategy[int]:
    """Sizes just under, at and just over a limit."""
    return st.sampled_from([limit - 1, limit, limit + 1])


def big_text(limit: int, *, char: str = "x") -> st.SearchStrategy[str]:
    """Text of a UTF-8 size around ``limit`` bytes, made of ``char`` (1 to 4 bytes each)."""
    width = len(char.encode())
    return around(limit).map(lambda n: char * (n // width) + "x" * (n % width))


# ------------------------------------------------------------------------------------ ids and tokens


def ulid_like(*, valid: bool) -> st.SearchStrategy[str]:
    if valid:
        return st.tuples(st.sampled_from("01234567"), st.text(ULID_ALPHABET, min_size=25, max_size=25)).map("".join)
    return st.text(string.ascii_letters + string.digits + "-_!", min_size=20, max_size=30)


def ids(prefix: str) -> st.SearchStrategy[str]:
    """Ids of every shape: right and wrong prefixes, valid and broken ULIDs, and random text."""
    prefixes = st.sampled_from([prefix, "aex", "wf", "wex", prefix.upper(), "", "x"])
    return weighted(
        (2, st.tuples(st.just(prefix + "-"), ulid_like(valid=True)).map("".join)),  # well-formed, unknown
        (2, st.tuples(prefixes, st.sampled_from(["-", "_", ""]), ulid_like(valid=True)).map("".join)),
        (1, st.tuples(prefixes, st.just("-"), ulid_like(valid=False)).map("".join)),
        (1, st.builds(lambda p: new_id(p).lower(), st.just(prefix))),  # case matters
        (2, wild_text),
    )


def page_tokens(prefix: str) -> st.SearchStrategy[str]:
    def token(body: str) -> str:
        return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")

    bodies = st.one_of(
        st.tuples(st.sampled_from(["v1:", "v2:", ""]), ids(prefix)).map("".join),
        wild_text,
    )
    well_formed = ulid_like(valid=True).map(lambda ulid: token(f"v1:{prefix}-{ulid}"))
    return weighted((3, st.just("")), (2, well_formed), (2, bodies.map(token)), (1, bodies),
                    (1, st.text(any_char, min_size=150, max_size=300)))  # fmt: skip


phases = weighted((4, st.integers(0, 6)), (1, st.integers(-(2**31), 2**31 - 1)))
page_sizes = weighted((4, st.integers(0, 1001)), (1, st.just(2**32 - 1)))

# ------------------------------------------------------------------------------------ agent executions

ENV_KEY_CHARS = string.ascii_letters + string.digits + "_"
tame_env_key = (
    st.tuples(st.sampled_from(string.ascii_letters + "_"), st.text(ENV_KEY_CHARS, max_size=20))
    .map("".join)
    .filter(lambda k: not k.startswith("STIGMER_AGENT_"))
)  # those keys steer the echo agent
wild_env_key = st.one_of(wild_text, st.tuples(st.sampled_from(string.digits), tame_env_key).map("".join))
tame_env = st.dictionaries(tame_env_key, tame_text, max_size=5)
wild_env = st.dictionaries(st.one_of(tame_env_key, wild_env_key), wild_text, max_size=8)

# ------------------------------------------------------------------------------------ workflow documents

NAME_CHARS = string.ascii_letters + string.digits + "-_"
doc_names = st.text(NAME_CHARS, min_size=1, max_size=20)
refs = st.one_of(
    st.sampled_from(["${input.user}", "${input}", "${greeting}", "${tasks.t0.output}", "${tasks.t9.output}",
                     "${nope}", "${ bad }", "${", "${}", "${a..b}", "$x", "${tasks.t0}"]),
    st.builds(lambda k: "${" + k + "}", st.text(NAME_CHARS + ".", max_size=12)),
)  # fmt: skip
template_text = st.lists(st.one_of(refs, wild_text), min_size=1, max_size=4).map(" ".join)
json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63), st.floats(allow_nan=False, allow_infinity=False),
    wild_text, template_text,
)  # fmt: skip
json_value = st.recursive(json_leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                             st.dictionaries(doc_names, inner, max_size=3)),
                          max_leaves=8)  # fmt: skip
seconds = st.one_of(st.floats(-1, 2), st.integers(-5, 100_000), st.sampled_from([86400, 86400.5, "1", None]))


def _task(kind: str, name: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "kind": kind, **extra}


task_names = st.one_of(st.sampled_from(["t0", "t1", "t2"]), doc_names, wild_text)
set_task = st.builds(_task, st.just("set"), task_names,
                     st.fixed_dictionaries({"values": st.dictionaries(st.one_of(doc_names, wild_text, st.just("input")),
                                                                      json_value, max_size=3)}))  # fmt: skip
wait_task = st.builds(_task, st.just("wait"), task_names, st.fixed_dictionaries({"seconds": seconds}))
agent_task = st.builds(
    _task, st.just("agent"), task_names,
    st.fixed_dictionaries({"agent": st.one_of(st.just("echo"), doc_names, wild_text), "message": template_text},
                          optional={"runtime_env": st.dictionaries(st.one_of(doc_names, wild_text),
                                                                   st.one_of(template_text, json_leaf), max_size=2)}),
)  # fmt: skip
odd_task = st.one_of(
    st.dictionaries(st.sampled_from(["name", "kind", "values", "seconds", "agent", "message", "extra"]),
                    json_value, max_size=4),
    json_value,
)  # fmt: skip
tasks = st.lists(weighted((2, set_task), (1, wait_task), (2, agent_task), (1, odd_task)), max_size=5)
doc_objects = st.fixed_dictionaries(
    {"name": weighted((4, doc_names), (1, wild_text), (1, json_leaf))},
    optional={"tasks": weighted((4, tasks), (1, json_value)), "description": st.one_of(wild_text, json_leaf),
              "extra": json_value},
)  # fmt: skip


plain_text = st.text(st.characters(codec="utf-8", exclude_characters="$"), max_size=20)
MUTATIONS = ("drop a field", "unknown kind", "reuse a name", "negative wait", "extra field", "forward reference",
             "no tasks", "odd name")  # fmt: skip


@st.composite
def valid_objects(draw: st.DrawFn) -> dict[str, Any]:
    """A valid document built task by task (references only to what comes earlier), then 0-2 mutations."""
    tasks: list[dict[str, Any]] = []
    refs = ["${input.user}", "${input}"]
    for i in range(draw(st.integers(1, 4))):
        name = f"t{i}-{draw(doc_names)}"
        kind = draw(st.sampled_from(["set", "wait", "agent"]))
        if kind == "set":
            key = draw(doc_names.filter(lambda k: k not in ("input", "tasks")))
            value = draw(st.one_of(plain_text, st.sampled_from(refs), st.integers(), st.booleans(),
                                   st.lists(st.sampled_from(refs), max_size=2)))  # fmt: skip
            tasks.append({"name": name, "kind": "set", "values": {key: value}})
            refs.append("${" + key + "}")
        elif kind == "wait":
            tasks.append({"name": name, "kind": "wait", "seconds": draw(st.floats(0, 86400))})
        else:
            message = draw(st.lists(st.one_of(plain_text, st.sampled_from(refs)), min_size=1, max_size=3))
            env = draw(st.dictionaries(doc_names, st.one_of(plain_text, st.sampled_from(refs)), max_size=2))
            tasks.append({"name": name, "kind": "agent", "agent": draw(doc_names), "message": "x " + " ".join(message),
                          "runtime_env": env})  # fmt: skip
        refs.append("${tasks." + name + ".output}")
    name = f"{draw(doc_names)}-{draw(st.integers(0, 10**9))}"  # rarely taken already
    doc: dict[str, Any] = {"name": name, "description": draw(plain_text), "tasks": tasks}
    for mutation in draw(st.lists(st.sampled_from(MUTATIONS), max_size=2)):
        task = tasks[draw(st.integers(0, len(tasks) - 1))] if tasks else {}
        if mutation == "drop a field" and task:
            del task[draw(st.sampled_from(sorted(task)))]
        elif mutation == "unknown kind":
            task["kind"] = draw(st.one_of(wild_text, json_leaf))
        elif mutation == "reuse a name" and len(tasks) > 1:
            tasks[-1]["name"] = tasks[0].get("name")
        elif mutation == "negative wait":
            task.update(kind="wait", seconds=draw(st.sampled_from([-1, 86401, 1e308, "5"])))
        elif mutation == "extra field":
            task[draw(doc_names)] = draw(json_leaf)
        elif mutation == "forward reference" and tasks:
            tasks[0].update(kind="agent", agent="echo", message="${tasks." + str(tasks[-1].get("name")) + ".output}")
        elif mutation == "no tasks":
            tasks.clear()
        elif mutation == "odd name":
            doc["name"] = draw(st.one_of(wild_text, json_leaf))
    return doc


@st.composite
def documents(draw: st.DrawFn) -> str:
    """Near-valid documents, serialized in varied ways, sometimes cut short or corrupted."""
    obj = draw(weighted((4, valid_objects()), (2, doc_objects), (1, json_value)))
    text = json.dumps(obj, ensure_ascii=draw(st.booleans()), indent=draw(st.sampled_from([None, 0, 1, "\t"])))
    how = draw(weighted((8, st.just("as is")), (1, st.sampled_from(["truncate", "splice", "duplicate key",
                                                                     "big number"]))))  # fmt: skip
    if how == "truncate":
        text = text[: draw(st.integers(0, len(text)))]
    elif how == "splice":
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.one_of(nasty, wild_text)) + text[at:]
    elif how == "duplicate key" and text.startswith("{") and len(text) > 2:
        text = '{"name": "dup", ' + text[1:]
    elif how == "big number" and text.startswith("{") and len(text) > 2:
        digits = draw(st.sampled_from([20, 400, 4300, 4301, 10_000]))
        text = '{"n": ' + "9" * digits + ", " + text[1:]
    return text


raw_documents = st.one_of(
    wild_text,
    st.sampled_from(["{}", "[]", "null", "1", '"name"', '{"name": null}', '{"name": "a", "name": "b"}',
                     '{"name": "\\ud800", "tasks": []}', '{"name": "x\\u0000y"}', "[" * 5000 + "]" * 5000,
                     '{"name": "deep", "tasks": ' + "[" * 3000 + "]" * 3000 + "}", "\ufeff{}", '{"name": NaN}']),
)  # fmt: skip

# ------------------------------------------------------------------------------------ execution input

input_objects = st.fixed_dictionaries({}, optional={"user": json_value}).flatmap(
    lambda fixed: st.dictionaries(doc_names, json_value, max_size=3).map(lambda more: {**more, **fixed})
)
inputs = weighted(
    (1, st.just("")),
    (3, input_objects.map(lambda d: json.dumps(d, ensure_ascii=False))),
    (2, input_objects.map(lambda d: json.dumps(d, indent=1))),
    (1, st.sampled_from(['{"user": "\\ud800"}', '{"user": "\\u0000"}', '{"user": 1e999}', '{"user": NaN}',
                     '{"user": ' + "9" * 5000 + "}", '{"user": "a", "user": "b"}', "[]", "1", "null",
                     '{"user": ' + "[" * 3000 + "]" * 3000 + "}"])),
    (1, wild_text),
)  # fmt: skip

# ------------------------------------------------------------------------------------ request ids (AIP-155)

#: The server's own limit on a request_id's size (a UUID is 36 bytes).
MAX_REQUEST_ID_BYTES = 64
valid_request_ids = st.uuids().map(str)
FULL_WIDTH_DIGITS = str.maketrans("0123456789", "０１２３４５６７８９")  # digits to Python, not to a UUID
near_miss_request_ids = st.one_of(
    st.uuids().map(lambda u: u.hex),  # no hyphens
    st.uuids().map(lambda u: "{" + str(u) + "}"),
    st.uuids().map(lambda u: f"urn:uuid:{u}"),
    st.uuids().map(lambda u: f" {u}"),
    st.uuids().map(lambda u: f"{u}\n"),
    st.uuids().map(lambda u: str(u)[:-1] + "g"),
    st.uuids().map(lambda u: f"{u}0"),
    st.uuids().map(lambda u: str(u).replace("-", "_")),
    st.uuids().map(
        lambda u: str(u).translate(str.maketrans("0123456789", "０１２３４５６７８９"))
    ),  # full-width digits
)
request_ids = weighted(
    (3, valid_request_ids),
    (1, valid_request_ids.map(str.upper)),  # the same UUID: the server folds the case
    (1, st.just("")),  # no deduplication
    (3, near_miss_request_ids),
    (2, wild_text),
    (1, big_text(MAX_REQUEST_ID_BYTES)),
    (1, big_text(MIB, char="€")),
)
#: A few ids over and over, so that examples repeat them (same body, other body, other case).
REQUEST_ID_POOL = (
    "3f2b8c1e-5d4a-4f6b-9c7d-2e1f0a9b8c7d",
    "00000000-0000-0000-0000-000000000000",
    "ffffffff-ffff-ffff-ffff-ffffffffffff",
    "3F2B8C1E-5D4A-4F6B-9C7D-2E1F0A9B8C7D",  # the first one, upper case
    "3f2b8c1e5d4a4f6b9c7d2e1f0a9b8c7d",  # not a UUID in the 8-4-4-4-12 form
    "",
)
pooled_request_ids = st.sampled_from(REQUEST_ID_POOL)

# ------------------------------------------------------------------------------------ cancel and delete

#: The server's limits on a cancel's reason and requested_by (UTF-8 bytes).
MAX_REASON_BYTES = 1024
MAX_REQUESTED_BY_BYTES = 256
tame_reason = st.text(string.ascii_letters + string.digits + " .,!?-_\n\t", min_size=0, max_size=80)
reasons = weighted(
    (3, tame_reason),
    (3, wild_text),
    (1, big_text(MAX_REASON_BYTES)),
    (1, big_text(MAX_REASON_BYTES, char="€")),
    (1, st.sampled_from(["\x00", "a\rb", "\x1b[31mred", "line one\nline two\ttab", "\x7f", "\u2028"])),
)
tame_requester = st.text(string.ascii_letters + string.digits + "@.-_", min_size=0, max_size=40)
requesters = weighted(
    (3, tame_requester),
    (3, wild_text),
    (1, big_text(MAX_REQUESTED_BY_BYTES)),
    (1, big_text(MAX_REQUESTED_BY_BYTES, char="é")),
    (1, st.sampled_from(["", "   ", " ada@host ", "\tme\n", "a\nb", "\x00"])),
)
forces = st.booleans()

# ------------------------------------------------------------------------------------ list filters

#: Valid google.protobuf.Timestamp values span 0001-01-01 .. 9999-12-31; the field itself holds any int64/int32.
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799
timestamp_seconds = weighted(
    (3, st.integers(1_700_000_000, 1_900_000_000)),  # around now
    (1, st.integers(-(2**63), 2**63 - 1)),
    (1, st.sampled_from([0, -1, MIN_TIMESTAMP_SECONDS, MAX_TIMESTAMP_SECONDS, MAX_TIMESTAMP_SECONDS + 1,
                         2**53 + 1, 2**63 - 1, -(2**63)])),
)  # fmt: skip
timestamp_nanos = weighted((4, st.integers(0, 999_999_999)), (1, st.integers(-(2**31), 2**31 - 1)))


def valid_timestamp(seconds: int, nanos: int) -> bool:
    """Inside google.protobuf.Timestamp's range (what the server accepts as created_after)."""
    return MIN_TIMESTAMP_SECONDS <= seconds <= MAX_TIMESTAMP_SECONDS and 0 <= nanos <= 999_999_999


#: (seconds, nanos) of a created_after filter, or None to leave it unset.
created_afters = st.one_of(st.none(), st.tuples(timestamp_seconds, timestamp_nanos))
