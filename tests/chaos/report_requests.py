"""Judge what issue 14 added to the soak: creates retried with their request_id, cancels and deletes
under faults, and Temporal's own count of workflows against the records.

The promises, each a row of the report (see report.py):

* no duplicates: one record per create (per tag, per request_id), whatever happened to its tries;
  a record is made during one of its create's tries, never during one answered UNAVAILABLE by
  the server (that answer means nothing was stored);
* cancels: one accepted at once (PENDING) stays CANCELLED; a CANCELLED record says who asked and
  why; nothing ends CANCELLED that nobody asked to cancel, nor after a cancel answered UNAVAILABLE
  (nothing changed); a CANCELLED agent execution has no agent reply;
* deletes: a deleted execution (with its steps) is gone, and was finished when it went;
* no code but UNAVAILABLE and FAILED_PRECONDITION for a cancel or delete (no INTERNAL, no NOT_FOUND);
* Temporal: one run per workflow id, none still running once every record is terminal; with a
  persisted Temporal also one workflow per record, and a workflow without a record (a start whose
  answer was lost, its record removed) ends FAILED without running anything.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from stigmer.api import common_pb2
from tests.chaos.load import Attempt, Op
from tests.chaos.temporal_runs import execution_id

if TYPE_CHECKING:
    from tests.chaos.harness import SoakResult
    from tests.chaos.report import Report

#: A record is stamped while its create's call is under way; the tries of one create are at least
#: 0.32 s apart (load.RETRY_WAIT), so this slack never puts a record in the wrong try.
WINDOW_SLACK = 0.1
TERMINAL = (common_pb2.COMPLETED, common_pb2.FAILED, common_pb2.CANCELLED)


def phase_name(phase: int) -> str:
    return common_pb2.ExecutionPhase.Name(phase)


def tag_of(record: Any) -> str:
    """The tag of the create a top-level record came from ("" for a step or a foreign record)."""
    if getattr(record, "parent_id", ""):
        return ""
    if hasattr(record, "message"):
        message: str = record.message
        return message.removeprefix("chaos ") if message.startswith("chaos ") else ""
    try:
        user = json.loads(record.input).get("user", "")
    except (ValueError, AttributeError):
        return ""
    return user if isinstance(user, str) else ""


def _during(attempt: Attempt, at: float) -> bool:
    return attempt.wall_started - WINDOW_SLACK <= at <= attempt.wall_ended + WINDOW_SLACK


def top_level(result: SoakResult) -> list[Any]:
    return [r for r in [*result.agent_executions, *result.workflow_executions] if tag_of(r)]


class Ops:
    """The cancels and deletes of a soak, by target."""

    def __init__(self, ops: Iterable[Op]) -> None:
        self.all = list(ops)
        self.by_target: dict[str, list[Op]] = collections.defaultdict(list)
        for op in self.all:
            self.by_target[op.target].append(op)
        self.deleted = {o.target for o in self.all if o.action != "cancel" and o.code == "OK"}
        self.deleted |= {s for o in self.all if o.action != "cancel" and o.code == "OK" for s in o.step_ids}
        self.maybe_deleted = {o.target for o in self.all if o.action != "cancel" and o.unknown}
        #: Targets somebody may have cancelled: any cancel (one answered UNAVAILABLE may have reached
        #: Temporal: the server keeps it and sends it again once reconnected), or a delete with force.
        self.cancel_asked = {o.target for o in self.all if o.action in ("cancel", "force delete")}


def made_during_refusal(result: SoakResult) -> list[str]:
    """Records made during a try answered UNAVAILABLE by the server, or outside every try of their create."""
    tries: dict[str, list[Attempt]] = collections.defaultdict(list)
    for a in result.attempts:
        tries[a.tag].append(a)
    stamps: dict[str, set[tuple[str, float]]] = collections.defaultdict(set)
    for record in top_level(result):
        stamps[tag_of(record)].add((record.id, record.created_at.ToNanoseconds() / 1e9))
    for a in result.attempts:  # an acknowledged record that was deleted since: its answer has the stamp
        if a.code == "OK" and a.created_at:
            stamps[a.tag].add((a.id, a.created_at))
    found = []
    for tag, made in stamps.items():
        for id, at in made:
            during = [a for a in tries.get(tag, []) if _during(a, at)]
            if not during:
                found.append(f"{tag}: {id} made outside every try of its create")
            elif any(a.server_unavailable for a in during):
                found.append(
                    f"{tag}: {id} made during try {during[0].try_no}, answered UNAVAILABLE ({during[0].state})"
                )
    return sorted(found)


def judge_requests(report: Report, result: SoakResult, *, persisted: bool) -> None:
    ops = Ops(result.ops)
    _requests(report, result)
    _cancels(report, result, ops)
    _deletes(report, result, ops)
    _temporal(report, result, ops, persisted=persisted)


def _requests(report: Report, result: SoakResult) -> None:
    by_request: dict[str, list[Attempt]] = collections.defaultdict(list)
    for a in result.attempts:
        by_request[a.request_id or f"(none) {a.tag}"].append(a)
    retried = [tries for tries in by_request.values() if len(tries) > 1]
    most = max((len(t) for t in retried), default=1)
    report.row(
        "creates, each with a request_id",
        f"{len(by_request)}; {len(retried)} sent again ({sum(len(t) - 1 for t in retried)} retries, at most {most})",
    )
    unknown = [t for t in retried if any(a.code == "DEADLINE_EXCEEDED" or not a.state for a in t[:-1])]
    report.row("  retried after an answer that left it unknown whether it landed", len(unknown))
    missing_id = [f"{a.tag}: {a.try_no}" for a in result.attempts if not a.request_id]
    report.row("  tries sent without a request_id", len(missing_id), not missing_id, examples=missing_id)

    records = top_level(result)
    per_tag: dict[str, list[str]] = collections.defaultdict(list)
    per_request: dict[str, list[str]] = collections.defaultdict(list)
    for r in records:
        per_tag[tag_of(r)].append(r.id)
        if r.request_id:
            per_request[r.request_id].append(r.id)
    doubled = [f"{tag}: {ids}" for tag, ids in per_tag.items() if len(ids) > 1]
    doubled += [f"request {rid}: {ids}" for rid, ids in per_request.items() if len(ids) > 1]
    report.row("  creates with more than one record (duplicates)", len(doubled), not doubled, examples=doubled)
    request_of = {a.tag: a.request_id for a in result.attempts}
    wrong = [f"{r.id}: {r.request_id!r}, sent {request_of.get(tag_of(r))!r}" for r in records
             if r.request_id != request_of.get(tag_of(r))]  # fmt: skip
    report.row("  records whose request_id is not their create's", len(wrong), not wrong, examples=wrong)


def _cancels(report: Report, result: SoakResult, ops: Ops) -> None:
    cancels = [o for o in ops.all if o.action == "cancel"]
    codes = collections.Counter(o.code for o in cancels)
    report.row("cancels sent", f"{len(cancels)} (" + ", ".join(f"{c} {n}" for c, n in codes.most_common()) + ")")
    records = {r.id: r for r in [*result.agent_executions, *result.workflow_executions]}
    outcome = collections.Counter(
        phase_name(records[o.target].phase) for o in cancels if o.code == "OK" and o.target in records
    )
    report.row("  accepted: how they ended (CANCELLED, or finished first)", dict(outcome) or "-")

    no_mark = [f"{o.target}: {phase_name(o.phase)}" for o in cancels if o.code == "OK" and not o.cancel_requested]
    report.row("  accepted without cancel_requested_at in the answer", len(no_mark), not no_mark, examples=no_mark)
    ran_on = [
        f"{o.target}: {phase_name(records[o.target].phase)}"
        for o in cancels
        if o.code == "OK" and o.phase == common_pb2.CANCELLED and o.target in records
        and records[o.target].phase != common_pb2.CANCELLED
    ]  # fmt: skip
    report.row("  cancelled at once (PENDING) but not CANCELLED in the end", len(ran_on), not ran_on, examples=ran_on)

    mine = {o.target: o for o in cancels if o.code == "OK"}
    odd = []
    for id, op in mine.items():
        record = records.get(id)
        if record is None or record.phase != common_pb2.CANCELLED:
            continue
        if (record.cancelled_by, record.cancel_reason) != (op.requested_by, op.reason):
            odd.append(f"{id}: by {record.cancelled_by!r} for {record.cancel_reason!r}, asked: {op.requested_by!r}")
    report.row("  CANCELLED, but not saying who asked and why", len(odd), not odd, examples=odd)

    replied = [
        f"{r.id}: {[m.text for m in r.messages if m.role == 'agent']}"
        for r in result.agent_executions
        if r.phase == common_pb2.CANCELLED and any(m.role == "agent" for m in r.messages)
    ]
    report.row("  CANCELLED agent executions with an agent reply", len(replied), not replied, examples=replied)

    top = top_level(result)
    unasked = [f"{r.id}: {r.error}" for r in top if r.phase == common_pb2.CANCELLED and r.id not in ops.by_target]
    report.row("CANCELLED though nobody asked", len(unasked), not unasked, examples=unasked)
    refused_only = [
        r for r in top if r.id in ops.by_target
        and all(o.server_unavailable for o in ops.by_target[r.id] if o.action == "cancel")
        and any(o.action == "cancel" for o in ops.by_target[r.id])
    ]  # fmt: skip
    changed = [
        f"{r.id}: {phase_name(r.phase)}, cancel_requested_at {'set' if r.HasField('cancel_requested_at') else 'unset'}"
        for r in refused_only
        if r.phase == common_pb2.CANCELLED or r.HasField("cancel_requested_at")
    ]
    # A figure, not a check: an UNAVAILABLE cancel that may have reached Temporal is kept and
    # delivered later (the API's Cancel), so "cancelled anyway" is allowed.
    report.row(
        f"  cancels answered only UNAVAILABLE ({len(refused_only)}), carried out later", len(changed), examples=changed
    )


def _deletes(report: Report, result: SoakResult, ops: Ops) -> None:
    deletes = [o for o in ops.all if o.action != "cancel"]
    codes = collections.Counter(f"{o.action} {o.code}" for o in deletes)
    report.row("deletes sent", f"{len(deletes)} (" + ", ".join(f"{c} {n}" for c, n in sorted(codes.items())) + ")")
    listed = {r.id for r in [*result.agent_executions, *result.workflow_executions]}
    still = sorted(ops.deleted & listed)
    report.row("  deleted executions (their steps too) still listed", len(still), not still, examples=still)
    unfinished = [f"{o.target}: {phase_name(o.phase)}" for o in deletes if o.code == "OK" and o.phase not in TERMINAL]
    report.row("  deletes that answered with an unfinished execution", len(unfinished), not unfinished,
               examples=unfinished)  # fmt: skip
    timed_out = [f"{o.target}: {o.details}" for o in deletes if o.action == "force delete" and o.code != "OK"
                 and not o.unknown and not o.server_unavailable]  # fmt: skip
    report.row("  deletes with force that gave up waiting for the cancel", len(timed_out), not timed_out,
               examples=timed_out)  # fmt: skip

    def down(op: Op) -> bool:
        return any(op.started < up + 3.0 and op.ended > killed for killed, up in result.stigmer_down)

    bad = [
        f"{o.action} {o.target} {o.code}: {o.details}"
        for o in ops.all
        if not (o.code in ("OK", "FAILED_PRECONDITION") or o.server_unavailable or (o.unknown and down(o)))
    ]
    report.row("cancel/delete codes other than UNAVAILABLE, FAILED_PRECONDITION (INTERNAL, NOT_FOUND, ...)",
               len(bad), not bad, examples=bad)  # fmt: skip


def _temporal(report: Report, result: SoakResult, ops: Ops, *, persisted: bool) -> None:
    runs = result.temporal_runs
    records = [*result.agent_executions, *result.workflow_executions]
    known = {r.id for r in records} | ops.deleted | ops.maybe_deleted
    orphans = {
        wid: of_id
        for wid, of_id in runs.items()
        if execution_id(wid) not in known and not any(execution_id(r.parent_id) in known for r in of_id if r.parent_id)
    }
    listed = sum(len(of_id) for of_id in runs.values())
    report.row(
        "Temporal: execution workflows",
        f"{len(runs)} workflow ids, {listed} runs, for {len(records)} records + {len(ops.deleted)} deleted"
        f" ({len(orphans)} without a record)",
    )
    twice = [f"{wid}: {[r.status for r in of_id]}" for wid, of_id in runs.items() if len(of_id) > 1]
    report.row("  workflow ids with more than one run (started twice)", len(twice), not twice, examples=twice)
    running = [wid for wid, of_id in runs.items() if any(r.status == "RUNNING" for r in of_id)]
    report.row("  still running after every record was terminal", len(running), not running, examples=running)
    workflow_ids = {execution_id(wid) for wid in runs}
    # A step the workflow recorded but never started: its parent was cancelled in between.
    without = [
        f"{r.id}: {phase_name(r.phase)}"
        for r in records
        if r.id not in workflow_ids and not (getattr(r, "parent_id", "") and r.phase == common_pb2.CANCELLED)
    ]
    # In memory, Temporal forgets everything at each restart: figures then, not promises.
    report.row("  records Temporal has no workflow for", len(without), not without if persisted else None,
               examples=without)  # fmt: skip
    ran = [f"{wid}: {[r.status for r in of_id]}" for wid, of_id in orphans.items()
           if any(r.status != "FAILED" for r in of_id)]  # fmt: skip
    report.row("  workflows without a record that did not end FAILED", len(ran), not ran if persisted else None,
               examples=ran)  # fmt: skip
