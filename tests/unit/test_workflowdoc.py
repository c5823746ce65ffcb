"""Workflow documents: validation table, parsing, and run-time `${ref}` substitution."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stigmer.workflows import jsontext, templating, workflowdoc
from stigmer.workflows.templating import UnresolvedReference
from stigmer.workflows.workflowdoc import AgentTask, InvalidDocument, SetTask, WaitTask

EXAMPLE: dict[str, Any] = {
    "name": "greet",
    "description": "set, wait, ask",
    "tasks": [
        {"name": "t1", "kind": "set", "values": {"k": "v"}},
        {"name": "t2", "kind": "wait", "seconds": 0.5},
        {"name": "t3", "kind": "agent", "agent": "echo", "message": "hello ${k} ${input.user}"},
    ],
}


def doc(**changes: Any) -> str:
    """The example document with top-level fields replaced (None removes a field)."""
    data = {**EXAMPLE, **changes}
    return json.dumps({k: v for k, v in data.items() if v is not None})


def with_tasks(*tasks: dict[str, Any]) -> str:
    return doc(tasks=list(tasks))


SET = {"name": "s", "kind": "set", "values": {"k": "v"}}

GOOD = {
    "example": doc(),
    "no description": doc(description=None),
    "wait zero": with_tasks({"name": "w", "kind": "wait", "seconds": 0}),
    "wait max, integer": with_tasks({"name": "w", "kind": "wait", "seconds": 86400}),
    "names with - and _": doc(name="a-B_9", tasks=[{**SET, "name": "x-y_Z"}]),
    "name of 100 chars": doc(name="n" * 100),
    "whole input": with_tasks({"name": "a", "kind": "agent", "agent": "echo", "message": "${input}"}),
    "nested input path": with_tasks({"name": "a", "kind": "set", "values": {"u": "${input.a.b.c}"}}),
    "earlier task output": with_tasks(
        {"name": "a", "kind": "agent", "agent": "echo", "message": "hi"},
        {"name": "b", "kind": "agent", "agent": "echo", "message": "re: ${tasks.a.output}"},
    ),
    "earlier key, with path": with_tasks(
        {"name": "s", "kind": "set", "values": {"cfg": {"x": 1}}},
        {"name": "t", "kind": "set", "values": {"y": ["${cfg.x}", {"deep": "${cfg}"}]}},
    ),
    "runtime env with refs": with_tasks(
        SET,
        {
            "name": "a",
            "kind": "agent",
            "agent": "echo",
            "message": "m",
            "runtime_env": {"STIGMER_AGENT_DELAY_SECONDS": "${k}", "OTHER": "x"},
        },
    ),
    "unicode and quotes": with_tasks({"name": "s", "kind": "set", "values": {"k": 'héllo "q" \'; DROP'}}),
    "dollar without brace": with_tasks({"name": "s", "kind": "set", "values": {"k": "costs $5 {x}"}}),
}

# (document, an error that must be reported -- exact text, so the message format is pinned)
BAD = {
    "not json": ("{nope", "document: not valid JSON: Expecting property name enclosed in double quotes"),
    "empty": ("   ", "document: empty (expected a JSON object)"),
    "array": ("[]", "document: must be a JSON object, got array"),
    "NaN": (
        '{"name": "x", "tasks": [{"name": "w", "kind": "wait", "seconds": NaN}]}',
        "document: not valid JSON: NaN is not allowed",
    ),
    "duplicate key": ('{"name": "a", "name": "b", "tasks": []}', "document: duplicate key 'name' in an object"),
    "no name": (doc(name=None), "name: required (the workflow name)"),
    "empty name": (doc(name=""), "name: must not be empty"),
    "name not a string": (doc(name=7), "name: must be a string, got number"),
    "name with space": (doc(name="a b"), "name: 'a b' may contain only letters, digits, '-' and '_'"),
    "name too long": (doc(name="n" * 101), "name: 101 characters, at most 100 allowed"),
    "description not a string": (doc(description=[]), "description: must be a string, got array"),
    "unknown top field": (doc(extra=1), "extra: unknown field (expected name, description, tasks)"),
    "no tasks": (doc(tasks=None), "tasks: required (a non-empty list of tasks)"),
    "tasks not a list": (doc(tasks={}), "tasks: must be a list, got object"),
    "empty tasks": (doc(tasks=[]), "tasks: must contain at least one task"),
    "task not an object": (with_tasks("x"), "tasks[0]: must be an object, got string"),  # type: ignore[arg-type]
    "unknown kind": (
        with_tasks(SET, SET | {"name": "b"}, {"name": "c", "kind": "foo"}),
        "tasks[2].kind: unknown kind 'foo' (expected one of agent, set, wait)",
    ),
    "kind not a string": (
        with_tasks({"name": "c", "kind": 3}),
        "tasks[0].kind: unknown kind number (expected one of agent, set, wait)",
    ),
    "no kind": (with_tasks({"name": "c"}), "tasks[0].kind: required (one of agent, set, wait)"),
    "task without name": (with_tasks({"kind": "set", "values": {"k": 1}}), "tasks[0].name: required (the task name)"),
    "duplicate task names": (
        with_tasks(SET, {"name": "w", "kind": "wait", "seconds": 1}, SET),
        "tasks[2].name: duplicate task name 's' (first used by tasks[0])",
    ),
    "unknown task field": (
        with_tasks(SET | {"secnds": 1}),
        "tasks[0].secnds: unknown field (expected name, kind, values)",
    ),
    "set without values": (
        with_tasks({"name": "s", "kind": "set"}),
        "tasks[0].values: required (an object of keys to set)",
    ),
    "set values not object": (with_tasks(SET | {"values": [1]}), "tasks[0].values: must be an object, got array"),
    "set nothing": (with_tasks(SET | {"values": {}}), "tasks[0].values: must set at least one key"),
    "bad key": (
        with_tasks(SET | {"values": {"a.b": 1}}),
        "tasks[0].values: key 'a.b' must be 1-100 letters, digits, '-' or '_'",
    ),
    "reserved key": (
        with_tasks(SET | {"values": {"input": 1}}),
        "tasks[0].values.input: 'input' is reserved (it names the input scope)",
    ),
    "wait without seconds": (
        with_tasks({"name": "w", "kind": "wait"}),
        "tasks[0].seconds: required (a number of seconds, 0 to 86400)",
    ),
    "wait string": (
        with_tasks({"name": "w", "kind": "wait", "seconds": "5"}),
        "tasks[0].seconds: must be a number, got string",
    ),
    "wait boolean": (
        with_tasks({"name": "w", "kind": "wait", "seconds": True}),
        "tasks[0].seconds: must be a number, got boolean",
    ),
    "wait negative": (
        with_tasks({"name": "w", "kind": "wait", "seconds": -1}),
        "tasks[0].seconds: -1 is out of range (0 to 86400)",
    ),
    "wait too long": (
        with_tasks({"name": "w", "kind": "wait", "seconds": 86400.5}),
        "tasks[0].seconds: 86400.5 is out of range (0 to 86400)",
    ),
    "wait infinite": (
        '{"name": "x", "tasks": [{"name": "w", "kind": "wait", "seconds": 1e999}]}',
        "tasks[0].seconds: inf is out of range (0 to 86400)",
    ),
    "agent without agent": (
        with_tasks({"name": "a", "kind": "agent", "message": "m"}),
        "tasks[0].agent: required (the agent name)",
    ),
    "agent without message": (
        with_tasks({"name": "a", "kind": "agent", "agent": "echo"}),
        "tasks[0].message: required (the text sent to the agent)",
    ),
    "agent blank message": (
        with_tasks({"name": "a", "kind": "agent", "agent": "echo", "message": " "}),
        "tasks[0].message: must not be empty",
    ),
    "agent env not strings": (
        with_tasks({"name": "a", "kind": "agent", "agent": "echo", "message": "m", "runtime_env": {"X": 1}}),
        "tasks[0].runtime_env.X: must be a string, got number",
    ),
    "unresolved key": (
        doc(tasks=EXAMPLE["tasks"][1:]),
        "tasks[1].message: reference '${k}' does not resolve: 'k' is not set by an earlier set task "
        "(references name input.*, an earlier set key, or tasks.<earlier task>.output)",
    ),
    "key set later": (
        with_tasks({"name": "a", "kind": "set", "values": {"x": "${k}"}}, SET),
        "tasks[0].values.x: reference '${k}' does not resolve: 'k' is not set by an earlier set task "
        "(references name input.*, an earlier set key, or tasks.<earlier task>.output)",
    ),
    "own key": (
        with_tasks({"name": "a", "kind": "set", "values": {"k": "v", "j": "${k}"}}),
        "tasks[0].values.j: reference '${k}' does not resolve: 'k' is not set by an earlier set task "
        "(references name input.*, an earlier set key, or tasks.<earlier task>.output)",
    ),
    "later task output": (
        with_tasks({"name": "a", "kind": "set", "values": {"x": "${tasks.b.output}"}}, SET | {"name": "b"}),
        "tasks[0].values.x: reference '${tasks.b.output}' refers to task 'b', which does not run before this task",
    ),
    "own output": (
        with_tasks({"name": "a", "kind": "agent", "agent": "e", "message": "${tasks.a.output}"}),
        "tasks[0].message: reference '${tasks.a.output}' refers to task 'a', which does not run before this task",
    ),
    "unknown task": (
        with_tasks({"name": "a", "kind": "agent", "agent": "e", "message": "${tasks.zz.output}"}),
        "tasks[0].message: reference '${tasks.zz.output}' refers to unknown task 'zz'",
    ),
    "task ref without output": (
        with_tasks(SET, {"name": "a", "kind": "agent", "agent": "e", "message": "${tasks.s}"}),
        "tasks[1].message: reference '${tasks.s}' is malformed "
        "(task outputs are referred to as tasks.<task name>.output)",
    ),
    "malformed ref": (
        with_tasks({"name": "a", "kind": "agent", "agent": "e", "message": "${ input }"}),
        "tasks[0].message: reference '${ input }' is malformed "
        "(expected dot-separated names like input.user or tasks.t1.output)",
    ),
    "unterminated ref": (
        with_tasks({"name": "a", "kind": "agent", "agent": "e", "message": "hi ${input.user"}),
        "tasks[0].message: unterminated reference (a '${' without its closing '}')",
    ),
    "ref deep in set value": (
        with_tasks({"name": "a", "kind": "set", "values": {"x": [{"y": "${nope}"}]}}),
        "tasks[0].values.x[0].y: reference '${nope}' does not resolve: 'nope' is not set by an earlier set "
        "task (references name input.*, an earlier set key, or tasks.<earlier task>.output)",
    ),
}


@pytest.mark.parametrize("document", GOOD.values(), ids=GOOD.keys())
def test_good_documents_have_no_errors(document: str) -> None:
    assert workflowdoc.validate(document) == []
    assert workflowdoc.validate(document.encode()) == []


@pytest.mark.parametrize(("document", "error"), BAD.values(), ids=BAD.keys())
def test_bad_documents_name_the_path_and_the_problem(document: str, error: str) -> None:
    errors = workflowdoc.validate(document)
    assert any(e.startswith(error) for e in errors), errors
    with pytest.raises(InvalidDocument) as raised:
        workflowdoc.parse(document)
    assert raised.value.errors == errors


def test_all_problems_are_reported_at_once() -> None:
    document = with_tasks(
        {"name": "a b", "kind": "wait", "seconds": -1},
        {"name": "c", "kind": "foo"},
    )
    errors = workflowdoc.validate(document)
    assert [e.split(":")[0] for e in errors] == ["tasks[0].name", "tasks[0].seconds", "tasks[1].kind"]


def test_size_limit_is_one_mebibyte_of_utf8() -> None:
    def padding_for(total: int) -> int:
        return total - len(doc(description=""))

    at_limit = doc(description="x" * padding_for(workflowdoc.MAX_DOCUMENT_BYTES))
    assert len(at_limit.encode()) == workflowdoc.MAX_DOCUMENT_BYTES
    assert workflowdoc.validate(at_limit) == []
    over = doc(description="x" * padding_for(workflowdoc.MAX_DOCUMENT_BYTES + 1))
    assert workflowdoc.validate(over) == ["document: 1048577 bytes exceeds the limit of 1048576 bytes (1 MiB)"]
    # Counted in bytes, not characters: 2-byte characters reach the limit at half the length.
    wide = doc(description="é" * (workflowdoc.MAX_DOCUMENT_BYTES // 2))
    assert (
        workflowdoc.validate(wide)[0].startswith("document: ") and "exceeds the limit" in workflowdoc.validate(wide)[0]
    )
    assert "exceeds the limit" in workflowdoc.validate(over.encode())[0]


def test_invalid_utf8_bytes() -> None:
    assert workflowdoc.validate(b'{"name": "\xff"}') == ["document: not valid UTF-8 (invalid start byte at byte 10)"]


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    deep: Any = "leaf"
    for _ in range(40):
        deep = [deep]
    errors = workflowdoc.validate(with_tasks({"name": "s", "kind": "set", "values": {"k": deep}}))
    assert any("nested deeper than 32 levels" in e for e in errors), errors
    assert workflowdoc.validate("[" * 100_000 + "]" * 100_000)[0].startswith("document: ")


# Found by tests/fuzz: each of these made the validation activity raise or its result outgrow a
# Temporal payload, or put text into the store that SQLite and protobuf cannot encode (INTERNAL).
@pytest.mark.parametrize(
    ("document", "error"),
    [
        ('{"name": "x", "n": ' + "9" * 5000 + "}", "document: not valid JSON: Exceeds the limit (4300 digits)"),
        ('{"name": "\\ud800", "tasks": []}', "document: contains a \\u escape of a lone surrogate"),
        (with_tasks({"name": "s", "kind": "set", "values": {"\udfff": 1}}), "document: contains a \\u escape"),
        (with_tasks({"name": "s", "kind": "set", "values": {"k": ["\ud83d"]}}), "document: contains a \\u escape"),
        ('{"name": "x", "tasks": [{"name": "s", "kind": "set", "values": {"k": 1e999}}]}',
         "tasks[0].values.k: inf is out of range (JSON numbers must be finite)"),
    ],
)  # fmt: skip
def test_hostile_documents_are_answered_not_raised(document: str, error: str) -> None:
    errors = workflowdoc.validate(document)
    assert errors[0].startswith(error), errors
    assert all(not jsontext.has_lone_surrogate(e) for e in errors)
    "".join(errors).encode("utf-8")  # storable and sendable as text


def test_a_document_must_fit_a_temporal_payload_once_escaped() -> None:
    # 800 kB of UTF-8, but 2.4 MB as Temporal's JSON sends it (12 bytes per astral character):
    # found by tests/fuzz, it made Validate and Create answer INTERNAL ("Blob data size exceeds limit").
    rockets = '{"name": "x", "description": "' + "🚀" * 200_000 + '", "tasks": [' + json.dumps(SET) + "]}"
    assert len(rockets.encode()) < workflowdoc.MAX_DOCUMENT_BYTES and workflowdoc.too_large(rockets)
    assert workflowdoc.validate(rockets) == [
        f"document: {len(json.dumps(rockets))} bytes once encoded for Temporal exceeds the limit of "
        f"{workflowdoc.MAX_DOCUMENT_PAYLOAD_BYTES} bytes (JSON writes each non-ASCII or control character as a "
        "6-byte \\u escape)"
    ]
    fits = rockets.replace("🚀" * 200_000, "🚀" * 100_000)
    assert not workflowdoc.too_large(fits) and workflowdoc.validate(fits) == []


def test_a_proper_surrogate_pair_is_fine() -> None:
    document = doc(description="🚀")  # json.dumps escapes it as the pair \ud83d\ude80
    assert "\\ud83d\\ude80" in document and workflowdoc.validate(document) == []


def test_many_or_long_problems_are_capped() -> None:
    many = '{"name": "x", "tasks": [' + ",".join(["1"] * 100_000) + "]}"
    errors = workflowdoc.validate(many)
    assert len(errors) == workflowdoc.MAX_ERRORS
    assert errors[0] == "tasks[0]: must be an object, got number"
    assert errors[-1] == f"... and {100_000 - workflowdoc.MAX_ERRORS + 1} more problems"
    long_key = with_tasks({"name": "s", "kind": "set", "values": {"k" * 500_000: "${nope}"}})
    errors = workflowdoc.validate(long_key)
    assert errors and all(len(e) <= workflowdoc.MAX_ERROR_LENGTH for e in errors)
    assert errors[0].endswith("...")


def test_parse_gives_typed_tasks() -> None:
    parsed = workflowdoc.parse(
        doc(
            tasks=[
                *EXAMPLE["tasks"],
                {"name": "t4", "kind": "agent", "agent": "echo", "message": "m", "runtime_env": {"A": "1"}},
            ]
        )
    )
    assert parsed.name == "greet"
    assert parsed.description == "set, wait, ask"
    assert parsed.tasks == (
        SetTask(name="t1", values={"k": "v"}),
        WaitTask(name="t2", seconds=0.5),
        AgentTask(name="t3", agent="echo", message="hello ${k} ${input.user}", runtime_env={}),
        AgentTask(name="t4", agent="echo", message="m", runtime_env={"A": "1"}),
    )
    assert [t.kind for t in parsed.tasks] == ["set", "wait", "agent", "agent"]
    assert workflowdoc.parse(doc(description=None)).description == ""


SCOPE = templating.make_scope(
    input={"user": "Ada", "n": 3, "who": {"first": "Grace"}},
    values={"k": "v", "cfg": {"x": [10, 20]}},
    outputs={"t3": ["[echo] hi"], "t2": None},
)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("hello ${k} ${input.user}", "hello v Ada"),
        ("${input.n}", 3),  # a whole-string reference keeps its JSON type
        ("n=${input.n}", "n=3"),  # embedded non-strings become compact JSON
        ("${cfg}", {"x": [10, 20]}),
        ("${cfg.x.1}", 20),  # list items by index
        ("cfg=${cfg}", 'cfg={"x":[10,20]}'),
        ("${tasks.t3.output}", ["[echo] hi"]),
        ("${tasks.t2.output}", None),
        ("${input.who.first}!", "Grace!"),
        ("no refs, $ and {} alone", "no refs, $ and {} alone"),
    ],
)
def test_render(template: str, expected: Any) -> None:
    assert templating.render(template, SCOPE) == expected


def test_render_text_and_value() -> None:
    assert templating.render_text("${input.n}", SCOPE) == "3"
    assert templating.render_text("${tasks.t3.output}", SCOPE) == '["[echo] hi"]'
    assert templating.render_value({"a": ["${k}", 1, {"b": "${input.n}"}], "c": None}, SCOPE) == {
        "a": ["v", 1, {"b": 3}],
        "c": None,
    }


@pytest.mark.parametrize("ref", ["input.missing", "input.user.deeper", "cfg.x.5", "cfg.x.one", "nope"])
def test_unresolved_reference_at_run_time(ref: str) -> None:
    with pytest.raises(UnresolvedReference, match=r"is not defined"):
        templating.render("${" + ref + "}", SCOPE)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", {}), ("  ", {}), ('{"user": "Ada"}', {"user": "Ada"})],
)
def test_parse_input(text: str, expected: dict[str, Any]) -> None:
    assert jsontext.parse_input(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1]", "input: must be a JSON object, got array"),
        ("{", "input: not valid JSON"),
        ('{"a": NaN}', "input: not valid JSON"),
        ('{"a": 1e999}', "input: not valid JSON: the number 1e999 is out of range"),
        ('{"a": ' + "1" * 5000 + "}", r"input: not valid JSON: Exceeds the limit \(4300 digits\)"),
        ('{"a": ["\\ud800"]}', r"input: contains a \\u escape of a lone surrogate"),
    ],
)
def test_parse_input_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        jsontext.parse_input(text)
