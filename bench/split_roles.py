"""Benchmark 12: split roles (issue 16), the workers in a process of their own, side by side.

One throw-away PostgreSQL cluster (stigmer.testing.postgres, shared_buffers 128 MB as in
benchmark 10) holds every store here, one database per setup. Two setups, both on PostgreSQL so
that only the process layout differs:

- ``split``: a ``stigmer server start --role api`` process (gRPC, creators, no workers) and a
  ``stigmer worker start`` process (the three workers, no API), on one database and one set of
  task queues;
- ``all``: one ``stigmer server start`` (the default role, API and workers in one process).

Three parts:

- **a. Create overhead with the workers out of process**: benchmark 3's method on an in-memory
  Temporal dev server of this benchmark's own (with the run's persistent one, Temporal's SQLite
  file is the bottleneck while workflows execute, as benchmark 3 found, and would drown a 1 ms
  goal): load from bench/load_client.py in separate processes, ``stigmer`` (Create through the
  api process) against ``raw`` (``client.start_workflow`` with the creator's exact arguments, its
  records written to the same PostgreSQL database beforehand, so that the worker process executes
  both kinds alike), chunks alternating ABBA, every execution drained before each chunk:
  sequential creates paced at <= 25/s -> p50 / p99; 50 in flight -> throughput. The ``all`` setup
  is measured the same way, against raw on its own database, as the reference. This benchmark
  holds the reconciler's lease on both databases meanwhile (see ``hold_lease``): no stigmer
  process reconciles in part a, as every API replica but the leader.
- **b. CPU seconds per 1000 COMPLETED executions**, ``all`` vs ``split`` (api + worker summed),
  the same Temporal: from a quiet start (nothing unfinished), creates paced at 25/s (5 in flight)
  from a load client, until every one of them is COMPLETED; CPU (utime + stime, /proc, bench/procs.py)
  of the role processes over that window, divided by the executions completed in it (counted in
  the database). Temporal's and PostgreSQL's CPU over the same window are shown beside, not summed.
  Setups alternate ABBA; the lease is back with the API processes (each reconciles every minute).
- **c. Recovery after a Temporal kill** (the run's persistent dev server, SIGKILLed and restarted
  on the same port, as in benchmark 1): a split pair and an ``all`` process, each on a database of
  its own, live through the same outages; right after each kill a client per setup creates every
  50 ms (through the api process / the all process) until one succeeds, then Watches it to
  COMPLETED (run by the worker process / the all process). Zero is Temporal answering
  DescribeNamespace again (probed every 10 ms).

Goals (issue 16, item 7): with the workers out of process, Create p50 at most 1 ms over raw
``start_workflow`` and throughput at least 1.0x raw's.

Run as ``python3 -m bench.split_roles --database-url URL raw ...`` this module is the raw
contender on PostgreSQL: bench/load_client.py's raw mode with the store at URL instead of a
data dir's SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import os
import random
import signal
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import procs
from bench.happy_path import PACE, Chunk, merge, run_load, schedule
from bench.happy_path import RAW as HAPPY_RAW
from bench.harness import PATCH_ENV, ROOT, Context, StigmerApi, _environment, wait_answering
from bench.recovery import OUTAGES, create_until_ok
from bench.stats import Summary, Table, fmt_ms, fmt_ratio, fmt_seconds, ratio, verdict
from stigmer.controllers.leadership import LEASE_KEY
from stigmer.store.postgres import PgLease
from stigmer.temporal.names import (
    AGENT_EXECUTION_QUEUE_ENV,
    WORKFLOW_EXECUTION_QUEUE_ENV,
    WORKFLOW_VALIDATION_QUEUE_ENV,
    TaskQueues,
)
from stigmer.testing.postgres import PostgresDatabase, PostgresServer
from stigmer.testing.server import StigmerServerProcess
from stigmer.testing.temporal import TemporalDevServer

NAME = "split"
SPLIT, ALL = "split (api + worker processes)", "all (one process)"
STIGMER, RAW = "stigmer-py gRPC Create", "raw client.start_workflow"
IN_FLIGHT = 50
PG_SETTINGS = {"shared_buffers": "128MB"}  # PostgreSQL's default, as in benchmark 10
P50_GOAL_S = 0.001
THROUGHPUT_GOAL = 1.0
CPU_PACE = PACE  # part b: one create per 40 ms at most (25/s, below what the workers execute)
CPU_LANES = 5
RETRY_EVERY = 0.05
CYCLE_BUDGET = 40.0


# ------------------------------------------------------------------------------ setups


@dataclass
class Setup:
    """One layout on one database: ``front`` serves the API (the all process, or the api one);
    ``procs`` are every stigmer process of it (front first)."""

    label: str
    database: PostgresDatabase
    queues: TaskQueues
    processes: list[StigmerServerProcess]
    #: The reconciler's lease on the database, held by this benchmark while it must not run (part a).
    lease: PgLease | None = None

    def release_lease(self) -> None:
        """Let the processes reconcile again (the API process takes the lease within ~5 s)."""
        if self.lease is not None:
            self.lease.release()  # the advisory lock goes with its connection
            self.lease = None

    @property
    def front(self) -> StigmerServerProcess:
        return self.processes[0]

    @property
    def address(self) -> str:
        return self.front.address

    def pids(self) -> list[int]:
        pids = []
        for server in self.processes:
            assert server.proc is not None, f"{self.label}: a process is not running"
            pids.append(server.proc.pid)
        return pids


def _process(
    stack: contextlib.ExitStack, ctx: Context, *, name: str, temporal: str, queues: TaskQueues,
    url: str, role: str,
) -> StigmerServerProcess:  # fmt: skip
    """One `stigmer server start --role api` / `stigmer worker start` / `stigmer server start`
    (role all), blocking until it serves; its kill is registered on ``stack`` first."""
    extra = ["--database-url", url] + (["--role", "api"] if role == "api" else [])
    server = StigmerServerProcess(data_dir=ctx.workdir / name, temporal=temporal, extra=extra, health_interval=15.0)
    if role == "worker":
        server._args[1:3] = ["worker", "start"]  # the same options as `server start`
    env = {
        AGENT_EXECUTION_QUEUE_ENV: queues.agent_execution,
        WORKFLOW_EXECUTION_QUEUE_ENV: queues.workflow_execution,
        WORKFLOW_VALIDATION_QUEUE_ENV: queues.workflow_validation,
    }
    patch = os.environ.get(PATCH_ENV, "")
    if patch:  # run.py --patch: the same command line through bench/patched_server.py
        server._args[:1] = [sys.executable, str(ROOT / "bench" / "patched_server.py")]
        env[PATCH_ENV] = patch
    stack.callback(server.kill)
    with _environment(env):
        server.start()
    return server


def hold_lease(stack: contextlib.ExitStack, database: PostgresDatabase) -> PgLease:
    """Take the reconciler's lease on ``database`` (before any stigmer process can) and keep it.

    The raw contender writes its records PENDING before it starts their workflows; a reconciler
    pass in between (the lease holder's first, ~5 s after it starts, then one a minute) would
    start them itself, and raw's start_workflow would fail (WorkflowAlreadyStartedError, seen in
    a quick run). Held here, no stigmer process leads, as every API replica but one.
    """
    lease = PgLease(database.url, LEASE_KEY)  # what the processes use: an advisory lock on a connection
    stack.callback(lease.release)
    if not lease.acquire():
        raise RuntimeError(f"the reconciler's lease on {database.name} is taken already")
    return lease


async def start_setup(
    stack: contextlib.ExitStack, ctx: Context, pg: PostgresServer, temporal: str, *, label: str, name: str,
    lease: bool = False,
) -> Setup:  # fmt: skip
    database = await asyncio.to_thread(pg.create_database)
    held = await asyncio.to_thread(hold_lease, stack, database) if lease else None
    queues = TaskQueues.with_suffix(f"bench-{name}")
    roles = ("all",) if label == ALL else ("api", "worker")
    processes = []
    for role in roles:
        start = functools.partial(_process, stack, ctx, name=f"{name}-{role}", temporal=temporal, queues=queues)
        processes.append(await asyncio.to_thread(start, url=database.url, role=role))
    setup = Setup(label=label, database=database, queues=queues, processes=processes, lease=held)
    for server in processes:  # every process of it connected (the worker serves GetStatus too)
        api = StigmerApi(server.address)
        try:
            await api.wait_state("CONNECTED", timeout=30)
        finally:
            await api.close()
    return setup


def unfinished(database: PostgresDatabase) -> int:
    """Executions PENDING or IN_PROGRESS, counted in the database (no RPC to the processes measured)."""
    rows = database.server.execute(
        "SELECT count(*) FROM agent_executions WHERE phase IN ('PENDING', 'IN_PROGRESS')", dbname=database.name
    )
    return int(rows[0][0])


def completed(database: PostgresDatabase) -> int:
    rows = database.server.execute(
        "SELECT count(*) FROM agent_executions WHERE phase = 'COMPLETED'", dbname=database.name
    )
    return int(rows[0][0])


async def drain(database: PostgresDatabase, *, timeout: float, interval: float = 0.25) -> float:  # noqa: ASYNC109
    """Wait until nothing is unfinished; seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await asyncio.to_thread(unfinished, database) == 0:
            return time.monotonic() - started
        await asyncio.sleep(interval)
    raise TimeoutError(f"executions in {database.name} still unfinished after {timeout:g} s")


# ------------------------------------------------------------------------------ the run


async def run(ctx: Context) -> list[Table]:
    tables: list[Table] = []
    with contextlib.ExitStack() as stack:
        pg = PostgresServer(settings=PG_SETTINGS)  # under /tmp: the postgres user cannot enter workdir
        stack.callback(pg.close)  # kills every process of the cluster, removes its dir
        await asyncio.to_thread(pg.start)
        temporal = TemporalDevServer(log_path=ctx.workdir / "temporal-split.log")
        stack.callback(temporal.kill)
        temporal.start()
        await temporal.wait_ready_async()
        setups: dict[str, Setup] = {}

        async def load_parts() -> list[Table]:
            ctx.say(f"{NAME}: starting the split pair and the all process (PostgreSQL, {temporal.address})")
            for label, name in ((SPLIT, "split"), (ALL, "split-all")):
                setups[label] = await start_setup(stack, ctx, pg, temporal.address, label=label, name=name, lease=True)
            try:
                tables = await overhead(ctx, temporal, setups)
                led = [s.label for s in setups.values() if "now runs the reconciler" in s.front.log()]
                tables[0].notes.append(
                    f"the reconciler's lease was NOT held throughout: {', '.join(led)} reconciled during part a"
                    if led
                    else "no stigmer process reconciled during part a (the benchmark held the lease)"
                )
                return tables
            finally:
                for setup in setups.values():  # part b: every process as in production, reconciler and all
                    await asyncio.to_thread(setup.release_lease)

        parts: list[tuple[str, Callable[[], Awaitable[list[Table]]]]] = [
            ("a (create overhead)", load_parts),
            ("b (CPU per 1000)", lambda: cpu_per_execution(ctx, temporal, pg, setups)),
            ("c (recovery)", lambda: recovery(ctx, pg)),
        ]
        for label, part in parts:
            started = time.monotonic()
            try:
                tables += await part()
            except Exception as err:  # one broken part must not hide the others
                traceback.print_exc()
                failed = Table(f"Benchmark 12{label[0]}: FAILED", ["error"])
                failed.add(f"{type(err).__name__}: {err}".replace("\n", " ")[:300])
                tables.append(failed)
            ctx.say(f"{NAME}: part {label} done in {time.monotonic() - started:.0f} s")
            if label.startswith("b"):  # parts a and b are over: their processes go before part c
                for setup in setups.values():
                    for server in setup.processes:
                        await asyncio.to_thread(server.kill)
                await asyncio.to_thread(temporal.kill)
    return tables


# ------------------------------------------------------------------------------ a. create overhead


Results = dict[tuple[str, str, str], dict[str, Any]]  # (setup, phase, mode) -> merged chunks


async def overhead(ctx: Context, temporal: TemporalDevServer, setups: dict[str, Setup]) -> list[Table]:
    sequential, concurrent = (100, 400) if ctx.quick else (500, 2000)
    plan = [
        Chunk(phase=c.phase, mode=RAW if c.mode == HAPPY_RAW else STIGMER, count=c.count,
              in_flight=c.in_flight, interval=c.interval)
        for c in schedule(sequential=sequential, concurrent=concurrent, in_flight=IN_FLIGHT, chunks=2)
    ]  # fmt: skip
    results: Results = {}
    first_failures: dict[str, str] = {}
    drained = 0.0
    for label in (SPLIT, ALL):
        setup = setups[label]
        for number, chunk in enumerate(plan, 1):
            drained += await drain(setup.database, timeout=600)
            result = await load(ctx, temporal, setup, chunk)
            merge(results.setdefault((label, chunk.phase, chunk.mode), {}), result)
            ctx.say(
                f"{NAME}: {label}, chunk {number}/{len(plan)}: {chunk.phase} {chunk.mode} x{chunk.count}, "
                f"{chunk.in_flight} in flight: {chunk.count / result['elapsed']:.0f}/s, p50 "
                f"{Summary.of(result['latencies']).median * 1000:.2f} ms, failures {result['failures']}"
                + (f" (first: {result['first_failure']})" if result["failures"] else "")
            )
            if result["failures"]:
                first_failures.setdefault(f"{label}, {chunk.mode}", result["first_failure"])
        drained += await drain(setup.database, timeout=600)
    tables = overhead_tables(results, drained=drained, sequential=sequential, concurrent=concurrent)
    tables[0].notes += [f"first failure, {where}: {what}" for where, what in first_failures.items()]
    return tables


async def load(ctx: Context, temporal: TemporalDevServer, setup: Setup, chunk: Chunk) -> dict[str, Any]:
    if chunk.mode == STIGMER:
        return await run_load(ctx, ["stigmer", "--address", setup.address], chunk)
    target = ["--database-url", setup.database.url, "raw", "--temporal", temporal.address,
              "--data-dir", str(ctx.workdir / "split-raw"), "--queue", setup.queues.agent_execution]  # fmt: skip
    return await run_raw(ctx, target, chunk)


async def run_raw(ctx: Context, target: list[str], chunk: Chunk) -> dict[str, Any]:
    """One raw chunk: this module as a process (see the docstring), as happy_path.run_load runs
    bench/load_client.py."""
    log = ctx.workdir / "load-client.log"
    with log.open("ab") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.split_roles", *target, "--count", str(chunk.count),
            "--in-flight", str(chunk.in_flight), "--interval", str(chunk.interval),
            cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=err, start_new_session=True,
        )  # fmt: skip
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=600)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"raw load client exited {proc.returncode}; see {log}")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def overhead_tables(results: Results, *, drained: float, sequential: int, concurrent: int) -> list[Table]:
    table = Table(
        "Benchmark 12a: Create with the workers out of process vs raw start_workflow (PostgreSQL, executed)",
        ["setup", "operation", f"sequential p50 (n={sequential}, <= 25/s)", "p99",
         f"throughput ({concurrent}, {IN_FLIGHT} in flight)", "p50 under load", "p99 under load", "failures"],
    )  # fmt: skip
    figures: dict[tuple[str, str], tuple[float, float]] = {}
    for label in (SPLIT, ALL):
        for mode in (STIGMER, RAW):
            seq, conc = results.get((label, "sequential", mode)), results.get((label, "concurrent", mode))
            if not seq or not conc:
                continue
            s, c = Summary.of(seq["latencies"]), Summary.of(conc["latencies"])
            rate = len(conc["latencies"]) / conc["elapsed"]
            figures[(label, mode)] = (s.median, rate)
            table.add(label, mode, fmt_ms(s.median), fmt_ms(s.p99), f"{rate:.0f}/s", fmt_ms(c.median),
                      fmt_ms(c.p99), seq["failures"] + conc["failures"])  # fmt: skip
    table.notes.append(
        f"each setup's executions ran to COMPLETED (split: in the worker process; all: in the one process), "
        f"both contenders' alike; draining before every chunk took {drained:.0f} s in all. One in-memory "
        f"Temporal, one PostgreSQL; the load client, Temporal and PostgreSQL share the machine's cores."
    )

    def compare(label: str) -> tuple[float, float]:
        if (label, STIGMER) not in figures or (label, RAW) not in figures:
            return math.nan, math.nan
        (p50, rate), (raw_p50, raw_rate) = figures[(label, STIGMER)], figures[(label, RAW)]
        return p50 - raw_p50, ratio(rate, raw_rate)

    (extra, kept), (all_extra, all_kept) = compare(SPLIT), compare(ALL)
    targets = Table("Benchmark 12a targets (split roles; role all on PostgreSQL in brackets)",
                    ["target", "measured", "verdict"])  # fmt: skip
    targets.add("p50 overhead over raw <= 1 ms", f"{fmt_ms(extra)} ({fmt_ms(all_extra)})",
                verdict(None if math.isnan(extra) else extra <= P50_GOAL_S))  # fmt: skip
    targets.add("throughput >= 1.0x raw", f"{fmt_ratio(kept)} ({fmt_ratio(all_kept)})",
                verdict(None if math.isnan(kept) else kept >= THROUGHPUT_GOAL))  # fmt: skip
    return [table, targets]


# ------------------------------------------------------------------------------ b. CPU per execution


@dataclass
class CpuSample:
    label: str
    completed: int
    seconds: float
    role_cpu: list[float]  # per stigmer process of the setup (front first)
    temporal_cpu: float
    postgres_cpu: float


def _cpu(pid: int) -> float:
    try:
        return procs.sample(pid, at=0.0).cpu_seconds
    except ProcessLookupError:
        return 0.0


def _cpu_of(pids: list[int]) -> dict[int, float]:
    return {pid: _cpu(pid) for pid in pids}


async def cpu_per_execution(
    ctx: Context, temporal: TemporalDevServer, pg: PostgresServer, setups: dict[str, Setup]
) -> list[Table]:
    if set(setups) != {SPLIT, ALL}:
        raise RuntimeError("part a did not start both setups")
    count = 300 if ctx.quick else 1000
    reps = ctx.repetitions(full=2, quick=1)
    order = [(ALL, SPLIT, SPLIT, ALL)[i % 4] for i in range(2 * reps)]
    samples: list[CpuSample] = []
    chunk = Chunk(phase="cpu", mode=STIGMER, count=count, in_flight=CPU_LANES, interval=CPU_PACE)
    assert temporal.pid is not None
    for number, label in enumerate(order, 1):
        setup = setups[label]
        await drain(setup.database, timeout=600)
        await asyncio.sleep(1.0)  # the last completions' bookkeeping settles
        pids = setup.pids()
        done_before = await asyncio.to_thread(completed, setup.database)
        pg_before = _cpu_of(pg.processes())
        before, temporal_before, started = _cpu_of(pids), _cpu(temporal.pid), time.monotonic()
        await run_load(ctx, ["stigmer", "--address", setup.address], chunk)
        await drain(setup.database, timeout=600, interval=0.05)
        after, temporal_after, ended = _cpu_of(pids), _cpu(temporal.pid), time.monotonic()
        pg_after = _cpu_of(pg.processes())
        done = await asyncio.to_thread(completed, setup.database) - done_before
        sample = CpuSample(
            label=label, completed=done, seconds=ended - started,
            role_cpu=[after[pid] - before[pid] for pid in pids],
            temporal_cpu=temporal_after - temporal_before,
            postgres_cpu=sum(cpu - pg_before.get(pid, 0.0) for pid, cpu in pg_after.items()),
        )  # fmt: skip
        samples.append(sample)
        ctx.say(
            f"{NAME}: CPU {number}/{len(order)}: {label}: {done} COMPLETED in {sample.seconds:.1f} s, "
            f"{sum(sample.role_cpu) * 1000 / max(done, 1):.2f} CPU s per 1000 "
            f"({' + '.join(f'{c:.1f}' for c in sample.role_cpu)} s)"
        )
    return [cpu_table(samples, count=count)]


def cpu_table(samples: list[CpuSample], *, count: int) -> Table:
    table = Table(
        "Benchmark 12b: CPU seconds per 1000 COMPLETED executions, role all vs split roles (PostgreSQL, same Temporal)",
        ["setup", "runs", "executions COMPLETED", "window", "stigmer CPU s / 1000", "of which api / worker",
         "Temporal CPU s / 1000", "PostgreSQL CPU s / 1000"],
    )  # fmt: skip
    per: dict[str, float] = {}
    for label in (ALL, SPLIT):
        mine = [s for s in samples if s.label == label]
        done = sum(s.completed for s in mine)
        if not mine or done == 0:
            continue
        scale = 1000 / done
        role = sum(sum(s.role_cpu) for s in mine) * scale
        per[label] = role
        split = "-"
        if label == SPLIT:
            api, worker = (sum(s.role_cpu[i] for s in mine) * scale for i in (0, 1))
            split = f"{api:.1f} / {worker:.1f}"
        table.add(label, len(mine), done, fmt_seconds(sum(s.seconds for s in mine)), f"{role:.1f}", split,
                  f"{sum(s.temporal_cpu for s in mine) * scale:.1f}",
                  f"{sum(s.postgres_cpu for s in mine) * scale:.1f}")  # fmt: skip
    if len(per) == 2:
        table.notes.append(f"split / all: {fmt_ratio(ratio(per[SPLIT], per[ALL]))} the stigmer CPU per execution.")
    table.notes.append(
        f"each run: {count} creates (+10 warm-up) from a load client paced at <= 25/s ({CPU_LANES} in flight), "
        "from nothing unfinished until every one is COMPLETED (polled in the database, not through the "
        "processes); CPU = utime + stime from /proc over that window, load client excluded; setups ABBA."
    )
    table.notes.append(
        "PostgreSQL: every process of the cluster alive at the window's end (a backend that exited inside it "
        "is not counted). Temporal: the one dev server both setups share."
    )
    return table


# ------------------------------------------------------------------------------ c. recovery


async def recovery(ctx: Context, pg: PostgresServer) -> list[Table]:
    temporal = ctx.temporal
    cycles = ctx.repetitions(full=6, quick=3)
    rng = random.Random(12)
    results: dict[str, list[tuple[float | None, float | None]]] = {SPLIT: [], ALL: []}
    outages: list[float] = []
    with contextlib.ExitStack() as stack:
        ctx.say(f"{NAME}: recovery, a split pair and an all process against {temporal.address}")
        setups = {
            SPLIT: await start_setup(stack, ctx, pg, temporal.address, label=SPLIT, name="split-rec"),
            ALL: await start_setup(stack, ctx, pg, temporal.address, label=ALL, name="split-rec-all"),
        }
        apis = {label: StigmerApi(setup.address) for label, setup in setups.items()}
        watchers = {label: [StigmerApi(s.address) for s in setup.processes] for label, setup in setups.items()}
        try:
            for label, api in apis.items():  # first-call costs are not recovery
                warm = await create_until_ok(api, message="warm-up", budget=20)
                assert warm.completed is not None, f"{label} warm-up failed: {warm.error}"
            for cycle in range(cycles):
                outage = OUTAGES[cycle % len(OUTAGES)] + rng.uniform(0, 0.5)
                outages.append(outage)
                await asyncio.to_thread(temporal.kill, signal.SIGKILL)
                budget = outage + CYCLE_BUDGET
                tasks = {
                    label: asyncio.create_task(create_until_ok(api, message=f"cycle {cycle}", budget=budget))
                    for label, api in apis.items()
                }
                try:
                    await asyncio.sleep(outage)
                    temporal.start()
                    up = await wait_answering(temporal.address, timeout=30)
                    outcomes = {label: await task for label, task in tasks.items()}
                finally:
                    for task in tasks.values():
                        task.cancel()
                for label, got in outcomes.items():
                    results[label].append((_since(got.created, up), _since(got.completed, up)))
                ctx.say(f"{NAME}: recovery {cycle + 1}/{cycles}, outage {outage:.1f} s: " + "; ".join(
                    f"{label.split(' ')[0]} create {_show(_since(o.created, up))} done {_show(_since(o.completed, up))}"
                    for label, o in outcomes.items()
                ))  # fmt: skip
                for group in watchers.values():  # every process connected again before the next kill
                    for watcher in group:
                        await watcher.wait_state("CONNECTED", timeout=CYCLE_BUDGET)
                await asyncio.sleep(rng.uniform(0.5, 1.5))
        finally:
            for api in [*apis.values(), *(w for group in watchers.values() for w in group)]:
                await api.close()
    return [recovery_table(results, outages)]


def _since(at: float | None, up: float) -> float | None:
    return None if at is None else at - up


def _show(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def recovery_table(results: dict[str, list[tuple[float | None, float | None]]], outages: list[float]) -> Table:
    table = Table(
        "Benchmark 12c: Recovery of split roles after a Temporal restart (seconds after Temporal answers again)",
        ["setup", "first create p50 (api)", "p95", "worst", "first COMPLETED p50 (worker)", "p95", "worst",
         "cycles (missed)"],
    )  # fmt: skip
    for label in (SPLIT, ALL):
        rows = results[label]
        created = Summary.of([c for c, _ in rows])
        done = Summary.of([d for _, d in rows])
        table.add(label, fmt_seconds(created.median), fmt_seconds(created.p95), fmt_seconds(created.high),
                  fmt_seconds(done.median), fmt_seconds(done.p95), fmt_seconds(done.high),
                  f"{len(rows)} ({done.missing})")  # fmt: skip
    if outages:
        table.notes.append(
            f"{len(outages)} outages of {min(outages):.1f}-{max(outages):.1f} s (SIGKILL, restart on the same port, "
            "the run's persistent dev server); each setup's client created every 50 ms from the kill on. "
            "all: the same columns for the one process (its API and its workers)."
        )
    return table


# ------------------------------------------------------------------------------ the raw contender


def raw_main(argv: list[str]) -> None:
    """``--database-url URL`` then bench/load_client.py's arguments: its raw mode on PostgreSQL."""
    if len(argv) < 2 or argv[0] != "--database-url":
        raise SystemExit("usage: python3 -m bench.split_roles --database-url URL raw ... (bench/load_client.py)")
    url, rest = argv[1], argv[2:]
    from bench import load_client
    from stigmer.store import Store

    def open_at_url(cls: type[Store], data_dir: Path) -> Store:
        return cls.connect(url, data_dir=data_dir)

    # load_client's raw mode writes its records with Store.open(data_dir): here, into PostgreSQL.
    Store.open = classmethod(open_at_url)  # type: ignore[method-assign,assignment]
    asyncio.run(load_client.main(load_client.parse(rest)))
    sys.stdout.flush()
    os._exit(0)  # as load_client does: the SDK core's threads can abort interpreter finalization


if __name__ == "__main__":
    raw_main(sys.argv[1:])
