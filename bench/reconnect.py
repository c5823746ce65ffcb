"""Benchmark 5: the work of one reconnection, RECONNECTING entered -> CONNECTED -> three workers polling.

One server with default settings except ``--health-interval 1`` (so that a kill is noticed
within a second: detection is benchmark 2's subject, not this one's) and no traffic. Each cycle
SIGKILLs the persistent dev server, keeps it down 1-2 s, restarts it, and reads:

- from GetStatus recent_transitions: the last ``reconnect`` (UNHEALTHY -> RECONNECTING) before
  ``reconnect_ok``, and the ``reconnect_ok`` itself (dial, namespace check, three workers started,
  creators injected: the transition completes after all of that);
- from DescribeTaskQueue (probed every 25 ms on fresh channels): the first moment each of the
  three task queues has a poller that polled after the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time

from bench.harness import Context, StigmerApi, polled_since, start_stigmer, transitions_after, wait_answering, wall
from bench.stats import Summary, Table, fmt_seconds

NAME = "reconnect"
POLL_EVERY = 0.025


async def all_polling(address: str, queues: tuple[str, ...], *, since: float, budget: float) -> float | None:
    """Wall time at which every queue has had a poll since ``since``."""
    end = time.monotonic() + budget
    pending = set(queues)
    while time.monotonic() < end:
        answers = await asyncio.gather(*(polled_since(address, q, since) for q in sorted(pending)))
        pending -= {q for q, ok in zip(sorted(pending), answers, strict=True) if ok}
        if not pending:
            return time.time()
        await asyncio.sleep(POLL_EVERY)
    return None


async def run(ctx: Context) -> list[Table]:
    reps = ctx.repetitions(full=12, quick=3)
    rng = random.Random(5)
    temporal = ctx.temporal
    rows: list[dict[str, float]] = []
    with contextlib.ExitStack() as stack:
        server = await asyncio.to_thread(
            start_stigmer, stack, workdir=ctx.workdir, name="reconnect", temporal=temporal.address, health_interval=1.0
        )
        api = StigmerApi(server.address)
        try:
            await api.wait_state("CONNECTED", timeout=30)
            for cycle in range(reps):
                await asyncio.sleep(rng.uniform(0.3, 1.0))
                await asyncio.to_thread(temporal.kill, signal.SIGKILL)
                killed = time.time()
                await api.wait_state("UNHEALTHY", "RECONNECTING", timeout=10)
                await asyncio.sleep(rng.uniform(1.0, 2.0))
                temporal.start()
                polling_task = asyncio.create_task(
                    all_polling(temporal.address, server.queues.all(), since=killed, budget=20)
                )
                up = await wait_answering(temporal.address, timeout=30)
                status = await api.wait_state("CONNECTED", timeout=20)
                polling = await polling_task
                moves = transitions_after(status, killed)
                ok = [t for t in moves if t.trigger == "reconnect_ok"][-1]
                entered = [t for t in moves if t.trigger == "reconnect" and t.seq < ok.seq][-1]
                failed = sum(t.trigger == "reconnect_failed" for t in moves)
                row = {
                    "connected": wall(ok.at) - wall(entered.at),
                    "polling": float("nan") if polling is None else polling - wall(entered.at),
                    "up_to_connected": wall(ok.at) - up,
                    "failed_attempts": failed,
                }
                rows.append(row)
                ctx.say(f"{NAME}: cycle {cycle + 1}/{reps}: RECONNECTING->CONNECTED {row['connected']:.3f}s, "
                        f"->3 queues polled {row['polling']:.3f}s, Temporal answering->CONNECTED "
                        f"{row['up_to_connected']:.3f}s, failed attempts {failed}")  # fmt: skip
        finally:
            await api.close()
    return tables(rows)


def tables(rows: list[dict[str, float]]) -> list[Table]:
    table = Table(
        "5. Reconnection work (one server, no traffic, health interval 1 s)",
        ["interval", "p50", "p95", "worst", "n"],
    )
    for key, label in (
        ("connected", "RECONNECTING entered -> CONNECTED (dial, verify, 3 workers, creators)"),
        ("polling", "RECONNECTING entered -> all 3 task queues polled (DescribeTaskQueue)"),
        ("up_to_connected", "Temporal answers DescribeNamespace -> CONNECTED"),
    ):
        s = Summary.of([row[key] for row in rows])
        table.add(label, fmt_seconds(s.median), fmt_seconds(s.p95), fmt_seconds(s.high), s.n)
    failed = [row["failed_attempts"] for row in rows]
    table.notes.append(
        f"failed attempts per outage (the comeback probe retries as soon as the port opens): "
        f"median {Summary.of(failed).median:.0f}, max {max(failed, default=0):.0f}."
    )
    return [table]
