"""Judge a chaos soak: every promise of issue 7 as a row of a table (check, figure, verdict); those
of issue 14 (request ids, cancel, delete, Temporal's count) are report_requests.py's rows.

A row with verdict None is a figure to read (load, recovery times), not a promise. Violations are
listed under the table with examples, so a failing run says what broke without a rerun.
"""

from __future__ import annotations

import collections
import itertools
import re
import statistics
from dataclasses import dataclass, field

from stigmer.api import common_pb2
from stigmer.controllers.reconciler import LOST_REASON
from tests.chaos.harness import RESOURCE_SETTLE_TIMEOUT, Checkpoint, FaultKind, SoakResult
from tests.chaos.load import Attempt, Kind
from tests.chaos.procstats import PER_WORKER_THREADS, POOL_SLACK, resource_problems
from tests.chaos.report_requests import Ops, judge_requests, made_during_refusal

#: How often one log line (digits masked) may appear between two faults: the connection logs each
#: state change once and summarises repeats, so a few is normal and more is a flood.
MAX_REPEATS_PER_OUTAGE = 5
#: Created -> started of an execution with no fault in between must stay below this: the
#: workflow task timeout, which only a lost workflow task waits out (issue 19).
WORKFLOW_TASK_TIMEOUT = 10.0
#: A client's channel may still be reconnecting this long after the restarted server answers.
TRANSPORT_MARGIN = 3.0
TERMINAL = (common_pb2.COMPLETED, common_pb2.FAILED, common_pb2.CANCELLED)
UNFINISHED = (common_pb2.PENDING, common_pb2.IN_PROGRESS)
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ ")


@dataclass
class Row:
    check: str
    value: str
    ok: bool | None = None  # None: a figure, not a promise


@dataclass
class Report:
    mode: str
    rows: list[Row] = field(default_factory=list)
    violations: dict[str, list[str]] = field(default_factory=dict)
    timeline: list[str] = field(default_factory=list)

    def row(self, check: str, value: object, ok: bool | None = None, *, examples: list[str] | None = None) -> None:
        self.rows.append(Row(check, str(value), ok))
        if ok is False:
            self.violations[check] = (examples or [])[:5]

    @property
    def passed(self) -> bool:
        return not self.violations

    def table(self) -> str:
        width = max(len(r.check) for r in self.rows)
        vwidth = max(len(r.value) for r in self.rows)
        lines = [
            f"chaos soak, Temporal {self.mode}",
            f"{'check':<{width}}  {'value':<{vwidth}}  result",
            f"{'-' * width}  {'-' * vwidth}  ------",
        ]
        for r in self.rows:
            verdict = "" if r.ok is None else ("ok" if r.ok else "FAIL")
            lines.append(f"{r.check:<{width}}  {r.value:<{vwidth}}  {verdict}".rstrip())
        for check, examples in self.violations.items():
            lines.append(f"FAIL {check}:")
            lines.extend(f"    {e}" for e in examples)
        return "\n".join(lines)

    def details(self) -> str:
        """The table, then one line per fault (for the report file)."""
        header = "fault  kind              hold  recovery  tries  server states"
        return "\n".join([self.table(), "", header, *self.timeline])


def judge(result: SoakResult, *, persisted: bool) -> Report:
    report = Report(mode="persisted (--db-filename)" if persisted else "in memory")
    _load_and_faults(report, result)
    _outcomes(report, result, persisted=persisted)
    judge_requests(report, result, persisted=persisted)
    _start_latency(report, result)
    _codes(report, result)
    _final_state(report, result)
    _resources(report, result)
    _log(report, result)
    return report


def _load_and_faults(report: Report, result: SoakResult) -> None:
    kinds = collections.Counter(r.fault.kind for r in result.faults)
    report.row("faults injected", f"{len(result.faults)} (seed {result.seed})")
    for kind in FaultKind:
        recoveries = [r.recovery for r in result.faults if r.fault.kind is kind]
        if recoveries:
            report.row(
                f"  {kind.value}: recovery p50 / max",
                f"{kinds[kind]}x: {statistics.median(recoveries):.2f} s / {max(recoveries):.2f} s",
            )
    for r in result.faults:
        states = f"{len(r.transitions)} changes, {r.transitions.count('CONNECTED')}x CONNECTED"
        report.timeline.append(
            f"{r.fault.index:>5}  {r.fault.kind.value:<16}  {r.fault.hold:4.2f}  {r.recovery:6.2f} s"
            f"  {r.probes:>5}  {states}"
        )
    noticed = sum(bool(r.transitions) for r in result.faults)
    report.row("  faults the server noticed (left CONNECTED)", f"{noticed} of {len(result.faults)}")
    creates = collections.Counter(a.kind for a in result.attempts)
    report.row(
        "creates attempted", f"{len(result.attempts)} (" + ", ".join(f"{creates[k]} {k.value}" for k in Kind) + ")"
    )
    report.row("wall time", f"{result.wall:.1f} s")
    report.row(
        "load clients ended without error",
        "; ".join(result.client_errors) or "yes",
        not result.client_errors,
        examples=result.client_errors,
    )


def _lost(record: object) -> bool:
    """FAILED because in-memory Temporal forgot the workflow (the reconciler says so)."""
    return getattr(record, "phase") == common_pb2.FAILED and getattr(record, "error") == LOST_REASON  # noqa: B009


def _outcomes(report: Report, result: SoakResult, *, persisted: bool) -> None:
    agents = {e.id: e for e in result.agent_executions}
    workflows = {e.id: e for e in result.workflow_executions}
    by_message = collections.defaultdict(list)
    for e in result.agent_executions:
        if not e.parent_id:
            by_message[e.message].append(e.id)
    by_input = collections.defaultdict(list)
    for e in result.workflow_executions:
        by_input[e.input].append(e.id)

    created = [a for a in result.attempts if a.code == "OK"]
    ops = Ops(result.ops)
    missing, unexpected, lost, exhausted, as_expected, cancelled, gone = [], [], [], [], 0, 0, 0
    for a in created:
        record = (workflows if a.kind is Kind.WORKFLOW else agents).get(a.id)
        if record is None and (a.id in ops.deleted or a.id in ops.maybe_deleted):
            gone += 1
        elif record is None:
            missing.append(f"{a.tag} -> {a.id}")
        elif _expected(a, record):
            as_expected += 1
        elif record.phase == common_pb2.CANCELLED and a.id in ops.cancel_asked:
            cancelled += 1
        elif _lost(record):
            lost.append(f"{a.id}: {record.error}")
        elif record.phase == common_pb2.FAILED and record.error.startswith("timed out ("):
            # Each fault that cuts a running agent costs it one of its 3 attempts (workers stop
            # on every reconnection); a broken promise all the same, named apart for the reader.
            exhausted.append(f"{a.tag} {a.kind.value} {a.id}: {record.error}")
        else:
            unexpected.append(
                f"{a.tag} {a.kind.value} {a.id}: phase {common_pb2.ExecutionPhase.Name(record.phase)}"
                f" error {record.error!r}"
            )
    report.row("creates that returned an id", len(created))
    report.row(
        "  their record exists (or the load deleted it)",
        f"{len(created) - len(missing)} of {len(created)} ({gone} deleted)",
        not missing,
        examples=missing,
    )
    report.row("  ended as asked (COMPLETED, or FAILED with the agent's reason)", as_expected)
    report.row("  ended CANCELLED, as the load asked", cancelled)
    report.row("  FAILED: in-memory Temporal lost the workflow", len(lost), not (persisted and lost), examples=lost)
    report.row("  FAILED: every attempt of the agent cut by a fault", len(exhausted), not exhausted, examples=exhausted)
    report.row("  ended any other way", len(unexpected), not unexpected, examples=unexpected)

    stuck = [e.id for e in [*result.agent_executions, *result.workflow_executions] if e.phase in UNFINISHED]
    report.row("stuck in PENDING/IN_PROGRESS (all records, steps too)", len(stuck), not stuck, examples=stuck)
    steps = [e for e in result.agent_executions if e.parent_id]
    odd_steps = []
    for e in steps:
        parent = workflows.get(e.parent_id)
        if parent is not None and parent.phase == common_pb2.COMPLETED and e.phase != common_pb2.COMPLETED:
            odd_steps.append(f"{e.id} ({e.parent_id}): {e.error}")
    report.row(
        "workflow steps (agent executions) that failed under a COMPLETED workflow",
        len(odd_steps),
        not odd_steps,
        examples=odd_steps,
    )

    replies = [e for e in result.agent_executions if e.phase == common_pb2.COMPLETED]
    doubled = [f"{e.id}: {[(m.role, m.text) for m in e.messages]}" for e in replies if not _one_reply(e)]
    report.row(
        "COMPLETED agent executions with exactly one agent reply",
        f"{len(replies) - len(doubled)} of {len(replies)}",
        not doubled,
        examples=doubled,
    )

    refused = [a for a in result.attempts if a.server_unavailable]
    leftovers = made_during_refusal(result)
    report.row("creates answered UNAVAILABLE by the server", len(refused))
    report.row("  that left a record (made during that try)", len(leftovers), not leftovers, examples=leftovers)

    cut = [a for a in result.attempts if a.code == "UNAVAILABLE" and not a.state]
    in_window = [a for a in cut if _during(a, result.stigmer_down)]
    outside = [f"{a.tag}: {a.details}" for a in cut if not _during(a, result.stigmer_down)]
    kept = [a for a in in_window if _records_of(a, by_message, by_input)]
    report.row(
        "creates cut off by the stigmer SIGKILL (server unreachable)",
        f"{len(in_window)} ({len(kept)} had been recorded; they ended like the rest)",
    )
    report.row("  server unreachable outside its restart", len(outside), not outside, examples=outside)


def _start_latency(report: Report, result: SoakResult) -> None:
    """Created -> started of every top-level execution that started; those with a fault (from its
    injection until a create succeeded again) or a stigmer restart in between are shown apart:
    an outage may hold a start back, a healthy stretch must not."""
    faults = [(r.injected_at + result.wall_offset, r.recovered_at + result.wall_offset) for r in result.faults]
    faults += [(down + result.wall_offset, up + result.wall_offset) for down, up in result.stigmer_down]
    calm: list[tuple[float, str]] = []
    stormy: list[tuple[float, str]] = []
    for e in [*result.agent_executions, *result.workflow_executions]:
        if getattr(e, "parent_id", "") or not e.HasField("started_at"):
            continue
        created, started = e.created_at.ToNanoseconds() / 1e9, e.started_at.ToNanoseconds() / 1e9
        hit = any(begin <= started and created <= end for begin, end in faults)
        (stormy if hit else calm).append((started - created, e.id))

    def worst(values: list[tuple[float, str]]) -> str:
        if not values:
            return "-"
        wait, execution_id = max(values)
        return f"{statistics.median(v for v, _ in values):.3f} s / {wait:.3f} s ({execution_id}, n={len(values)})"

    slow = [
        f"{execution_id}: {wait:.2f} s"
        for wait, execution_id in sorted(calm, reverse=True)
        if wait > WORKFLOW_TASK_TIMEOUT
    ]
    report.row("created -> started p50 / worst, no fault in between", worst(calm), not slow, examples=slow[:5])
    report.row("created -> started p50 / worst, across a fault", worst(stormy))


def _expected(a: Attempt, record: object) -> bool:
    phase, error = getattr(record, "phase"), getattr(record, "error")  # noqa: B009
    if a.kind is Kind.FAILING_AGENT:
        return phase == common_pb2.FAILED and error == a.fail_reason
    if a.kind is Kind.WORKFLOW:  # its output carries the input through the templates
        return phase == common_pb2.COMPLETED and f"Hello, {a.tag}!" in getattr(record, "output")  # noqa: B009
    return phase == common_pb2.COMPLETED


def _one_reply(execution: object) -> bool:
    messages = list(getattr(execution, "messages"))  # noqa: B009
    return (
        len(messages) == 2
        and messages[0].role == "user"
        and messages[1].role == "agent"
        and messages[1].text == f"[echo] {messages[0].text}"
    )


def _records_of(a: Attempt, by_message: dict[str, list[str]], by_input: dict[str, list[str]]) -> list[str]:
    return by_input.get(a.workflow_input, []) if a.kind is Kind.WORKFLOW else by_message.get(a.message, [])


def _during(a: Attempt, windows: list[tuple[float, float]]) -> bool:
    return any(a.started < up + TRANSPORT_MARGIN and a.ended > down for down, up in windows)


def _codes(report: Report, result: SoakResult) -> None:
    codes = collections.Counter(a.code for a in result.attempts)
    report.row("answers by code", ", ".join(f"{code} {n}" for code, n in codes.most_common()))
    other = [f"{a.tag} {a.code}: {a.details}" for a in result.attempts if a.code not in ("OK", "UNAVAILABLE")]
    deadline = [a for a in result.attempts if a.code == "DEADLINE_EXCEEDED"]
    report.row(
        "codes other than UNAVAILABLE for faults (INTERNAL, UNKNOWN, ...)",
        len(other) - len(deadline),
        len(other) == len(deadline),
        examples=[o for o in other if "DEADLINE_EXCEEDED" not in o],
    )
    report.row(
        "client-side DEADLINE_EXCEEDED (20 s)",
        len(deadline),
        not deadline,
        examples=[f"{a.tag} after {a.ended - a.started:.1f} s" for a in deadline],
    )


def _final_state(report: Report, result: SoakResult) -> None:
    status = result.final_status
    state, workers = getattr(status, "state"), getattr(status, "workers_running")  # noqa: B009
    report.row(
        "server ends CONNECTED with three workers", f"{state}, {workers} workers", state == "CONNECTED" and workers == 3
    )


def _resources(report: Report, result: SoakResult) -> None:
    *_, base, final = [None, *result.checkpoints]
    if base is not None and final is not None:
        _compare(report, base, final)
    for point in result.checkpoints:
        report.row(
            f"{point.name}: load paused -> all terminal",
            f"{point.settled_in:.1f} s" + (f" (last: {', '.join(point.stragglers[:3])})" if point.stragglers else ""),
        )


def _compare(report: Report, base: Checkpoint, end: Checkpoint) -> None:
    label = f"pid {end.pid}: {base.name} -> {end.name}"
    problems = resource_problems(base.stats, end.stats)
    per_worker = "/".join(str(end.stats.thread_names[n]) for n in PER_WORKER_THREADS)
    report.row(
        f"fds, threads, tasks, {label}",
        f"{base.stats.fds} -> {end.stats.fds} fds, {base.stats.threads} -> {end.stats.threads} threads"
        f" (per-worker {per_worker}), {base.stats.tasks} -> {end.stats.tasks} asyncio tasks",
        not problems,
        examples=problems,
    )
    report.row(f"  waited for them to come back (bound {RESOURCE_SETTLE_TIMEOUT:g} s)", f"{end.resources_in:.1f} s")
    grew = dict(end.stats.thread_names - base.stats.thread_names)
    if grew:
        report.row(f"  pool threads kept (allowed +{POOL_SLACK})", grew)


#: Server bugs the soak found that are not fixed yet: their ERROR lines (and the tracebacks
#: logged with them) are shown as a figure, so that the soak still judges everything else. Each
#: pattern is matched against an ERROR line and the line after it, and names the test that
#: reproduces it (xfail, strict): remove the entry when that test starts passing.
KNOWN_FINDINGS: dict[str, re.Pattern[str]] = {
    # Server findings the soak tolerates until fixed, each named after the test that reproduces it.
    # Both found so far are fixed (tests/chaos/test_reconciler_delete_race.py and
    # test_cancel_meets_agent_result.py pass): none is tolerated now.
}


_FRAME_LINES = (" ", ">", "File ", "Traceback", "During handling", "The above exception")


def _known(line: str) -> str:
    return next((name for name, pattern in KNOWN_FINDINGS.items() if pattern.search(line)), "")


def _log(report: Report, result: SoakResult) -> None:
    log = result.log
    lines = log.splitlines()
    known: collections.Counter[str] = collections.Counter()
    errors = []
    for i, line in enumerate(lines):
        if " [ERROR] " in line:
            finding = _known("\n".join(lines[i : i + 2]))
            known[finding] += bool(finding)
            if not finding:
                errors.append(line[:500])
    tracebacks = []
    for i, line in enumerate(lines):
        if "Traceback" not in line:
            continue
        logged_with = next((x for x in reversed(lines[max(0, i - 3) : i]) if " [ERROR] " in x), "")
        if logged_with and _known(logged_with):
            continue
        # With the exception it ends in (the first line after it that is not a frame).
        exception = next((x for x in lines[i + 1 :] if x and not x.startswith(_FRAME_LINES)), "?")
        tracebacks.append(f"{logged_with[:200] or line} ... {exception[:300]}")
    report.row("server log: tracebacks", len(tracebacks), not tracebacks, examples=tracebacks)
    report.row("server log: ERROR lines", len(errors), not errors, examples=errors)
    for finding, n in known.items():
        if n:
            report.row(f"server log: known, not fixed: {finding}", n)
    offsets = [0, *(r.log_offset for r in result.faults), len(log)]
    worst, worst_line = 0, ""
    for start, end in itertools.pairwise(offsets):
        counts = collections.Counter(
            re.sub(r"\d+", "#", _TIMESTAMP.sub("", line)) for line in log[start:end].splitlines() if line.strip()
        )
        if counts:
            line, n = counts.most_common(1)[0]
            if n > worst:
                worst, worst_line = n, line
    report.row(
        "server log: most repeats of one line between two faults",
        worst,
        worst <= MAX_REPEATS_PER_OUTAGE,
        examples=[worst_line[:300]],
    )
    report.row("server log size", f"{len(log.splitlines())} lines")
