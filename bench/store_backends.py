"""Benchmark 10: the store's two backends side by side, SQLite (the default) and PostgreSQL (issue 15).

One throw-away PostgreSQL 15 cluster (stigmer.testing.postgres: fsync off, as SQLite's WAL with
``synchronous=NORMAL`` does not flush per commit either; shared_buffers 128 MB, PostgreSQL's
default) and one in-memory Temporal dev server of its own, shared by every server here (each on
task queues of its own). Four parts:

- **a. Create through a real server**: one server per backend (``--database-url`` for
  PostgreSQL), both with bench/patched_server.py ``noexec`` (the agent worker polls another
  queue, nothing is executed), so the Create path alone is timed: gRPC, controller, the store's
  insert and read-back, ``start_workflow``. Load from bench/load_client.py in separate processes,
  the two backends alternating in chunks (ABBA: drift and outside load hit both alike):
  sequential creates -> p50 / p99; 50 in flight -> throughput.
- **b. List on the store itself** (``Store.list_agent_executions``, no server): one page of 50,
  newest first; one page of an agent holding 10 % of the rows; one of an agent holding 0.1 %; at
  1k, 100k and 1M rows (``--quick``: 1k and 100k). Rows (97 % COMPLETED, 2 % FAILED, 1 %
  CANCELLED, a user message and a reply each) are bulk-inserted with SQL in big transactions
  (SQLite ``executemany``, PostgreSQL ``COPY``, then ``VACUUM ANALYZE`` as autovacuum would do
  soon after such a load); the insert time is in the table. The plan of the agent filter at the
  largest size is in the notes.
- **c. Reconciler start with 10k unfinished executions** (half PENDING, half IN_PROGRESS, whose
  workflows Temporal has never seen; ``--quick``: 2k): ``Store.unfinished_agent_executions()``
  alone, then a server (``noexec``) started on that store: from its CONNECTED transition to its
  "Reconciled unfinished executions" log line (it starts the PENDING ones' workflows again and
  marks the IN_PROGRESS ones FAILED). Meanwhile, and again once the pass is over, a create every
  50 ms from this process: create p99 during the pass vs idle.
- **d. Memory of a long Watch**: one server per backend, executing (defaults), both at once; after
  20 s of warm-up traffic one Watch opens on an agent that runs 5 minutes and stays open for the
  window (4 min; ``--quick``: 1 min) while two creates a second flow to other records on each
  server, executed to COMPLETED. RSS of the server process every 2 s (/proc).

Goals (issue 15): List p50 <= 5 ms at 100k rows; reconcile pass <= 10 s with 10k unfinished;
create p99 during the pass <= 2x idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import os
import sqlite3
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc

from bench import procs
from bench.happy_path import STIGMER as HAPPY_FIRST
from bench.happy_path import Chunk, merge, run_load, schedule
from bench.harness import PATCH_ENV, Context, Stigmer, StigmerApi, start_stigmer, wall
from bench.stats import Summary, Table, fmt_ms, fmt_ratio, fmt_seconds, ratio, verdict
from stigmer.api import agent_execution_pb2, agent_execution_pb2_grpc
from stigmer.store import Store
from stigmer.store.ids import UlidGenerator, new_id
from stigmer.temporal.agents import DELAY_ENV
from stigmer.testing.postgres import PostgresDatabase, PostgresServer
from stigmer.testing.temporal import TemporalDevServer

NAME = "store"
SQLITE, POSTGRES = "SQLite", "PostgreSQL"
BACKENDS = (SQLITE, POSTGRES)
IN_FLIGHT = 50
PG_SETTINGS = {"shared_buffers": "128MB"}  # PostgreSQL's default; the test helper's 16 MB is for tests

LIST_GOAL_S = 0.005
RECONCILE_GOAL_S = 10.0
CREATE_P99_GOAL = 2.0

#: agent_executions' columns, in the order the bulk rows are written.
COLUMNS = ("id", "agent", "message", "runtime_env", "phase", "messages", "error", "created_at", "started_at",
           "completed_at", "workflow_id", "parent_id", "version", "request_id", "request_hash",
           "cancel_requested_at", "cancelled_by", "cancel_reason")  # fmt: skip
BATCH = 50_000  # rows per transaction
COMMON_AGENT = "agent-3"  # every 10th row but the rare ones: ~10 %
RARE_AGENT = "agent-rare"  # every 1000th row: 0.1 %
#: 2 % of the rows, all older than every other agent's: a newest-first page of it must skip the rest.
RETIRED_AGENT = "agent-retired"
RETIRED_SHARE = 50  # one row in 50

Row = tuple[Any, ...]


async def run(ctx: Context) -> list[Table]:
    tables: list[Table] = []
    with contextlib.ExitStack() as stack:
        pg = PostgresServer(settings=PG_SETTINGS)  # under /tmp: the postgres user cannot enter workdir
        stack.callback(pg.close)  # kills every process of the cluster, removes its dir
        await asyncio.to_thread(pg.start)
        temporal = TemporalDevServer(log_path=ctx.workdir / "temporal-store.log")
        stack.callback(temporal.kill)
        temporal.start()
        await temporal.wait_ready_async()
        parts: list[tuple[str, Callable[[], Awaitable[list[Table]]]]] = [
            ("a (create)", lambda: creates(ctx, temporal, pg)),
            ("b (list)", lambda: listing(ctx, pg)),
            ("c (reconcile)", lambda: reconcile(ctx, temporal, pg)),
            ("d (watch memory)", lambda: watch_memory(ctx, temporal, pg)),
        ]
        for label, part in parts:
            started = time.monotonic()
            try:
                tables += await part()
            except Exception as err:  # one broken part must not hide the others
                traceback.print_exc()
                failed = Table(f"Benchmark 10{label[0]}: FAILED", ["error"])
                failed.add(f"{type(err).__name__}: {err}".replace("\n", " ")[:300])
                tables.append(failed)
            ctx.say(f"{NAME}: part {label} done in {time.monotonic() - started:.0f} s")
    return tables


def _noexec() -> str:
    return ",".join(p for p in (os.environ.get(PATCH_ENV, ""), "noexec") if p)


def _start(
    stack: contextlib.ExitStack, ctx: Context, temporal: TemporalDevServer, name: str, *,
    database: PostgresDatabase | None, patch: str | None,
) -> Stigmer:  # fmt: skip
    extra = ("--database-url", database.url) if database is not None else ()
    return start_stigmer(stack, workdir=ctx.workdir, name=name, temporal=temporal.address, extra=extra, patch=patch)


# ------------------------------------------------------------------------------ a. create


async def creates(ctx: Context, temporal: TemporalDevServer, pg: PostgresServer) -> list[Table]:
    sequential, concurrent = (200, 400) if ctx.quick else (1000, 4000)
    chunks = 2 if ctx.quick else 4
    plan = [
        Chunk(phase=c.phase, mode=SQLITE if c.mode == HAPPY_FIRST else POSTGRES, count=c.count,
              in_flight=c.in_flight, interval=0.0)
        for c in schedule(sequential=sequential, concurrent=concurrent, in_flight=IN_FLIGHT, chunks=chunks)
    ]  # fmt: skip
    results: dict[tuple[str, str], dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        database = await asyncio.to_thread(pg.create_database)
        servers = {
            SQLITE: await asyncio.to_thread(_start, stack, ctx, temporal, "store-a-sqlite", database=None,
                                            patch=_noexec()),
            POSTGRES: await asyncio.to_thread(_start, stack, ctx, temporal, "store-a-pg", database=database,
                                              patch=_noexec()),
        }  # fmt: skip
        for server in servers.values():
            api = StigmerApi(server.address)
            try:
                await api.wait_state("CONNECTED", timeout=30)
            finally:
                await api.close()
        for number, chunk in enumerate(plan, 1):
            result = await run_load(ctx, ["stigmer", "--address", servers[chunk.mode].address], chunk)
            merge(results.setdefault((chunk.phase, chunk.mode), {}), result)
            ctx.say(
                f"{NAME}: create chunk {number}/{len(plan)}: {chunk.phase} {chunk.mode} x{chunk.count}: "
                f"{chunk.count / result['elapsed']:.0f}/s, p50 {Summary.of(result['latencies']).median * 1000:.2f} ms"
            )
    return [create_table(results, sequential=sequential, concurrent=concurrent, chunks=chunks)]


def create_table(
    results: dict[tuple[str, str], dict[str, Any]], *, sequential: int, concurrent: int, chunks: int
) -> Table:
    table = Table(
        "Benchmark 10a: Create through a real server, SQLite vs PostgreSQL (nothing executed)",
        ["backend", f"sequential p50 (n={sequential})", "p99", f"throughput ({concurrent}, {IN_FLIGHT} in flight)",
         "p50 under load", "p99 under load", "failures"],
    )  # fmt: skip
    figures: dict[str, tuple[float, float]] = {}
    for backend in BACKENDS:
        seq, conc = results.get(("sequential", backend)), results.get(("concurrent", backend))
        if not seq or not conc:
            continue
        s, c = Summary.of(seq["latencies"]), Summary.of(conc["latencies"])
        rate = len(conc["latencies"]) / conc["elapsed"]
        figures[backend] = (s.median, rate)
        table.add(backend, fmt_ms(s.median), fmt_ms(s.p99), f"{rate:.0f}/s", fmt_ms(c.median), fmt_ms(c.p99),
                  seq["failures"] + conc["failures"])  # fmt: skip
    if len(figures) == 2:
        extra = (figures[POSTGRES][0] - figures[SQLITE][0]) * 1000
        kept = ratio(figures[POSTGRES][1], figures[SQLITE][1])
        table.notes.append(f"PostgreSQL vs SQLite: sequential p50 {extra:+.2f} ms, throughput {fmt_ratio(kept)}.")
    table.notes.append(
        f"both servers with bench/patched_server.py noexec (nothing executed: the Create path alone); "
        f"{chunks} chunks per backend and phase, ABBA; load from bench/load_client.py in its own process."
    )
    return table


# ------------------------------------------------------------------------------ bulk rows


def _ids(start_ms: int) -> Callable[[int], str]:
    """Record ids for rows created ``index`` seconds after ``start_ms``: strictly increasing ULIDs."""
    clock = [start_ms]
    generator = UlidGenerator(clock_ms=lambda: clock[0])

    def make(index: int) -> str:
        clock[0] = start_ms + index * 1000
        return f"aex-{generator.next()}"

    return make


def _messages(text: str, at: float, reply: bool) -> str:
    user = {"role": "user", "text": text, "at": at}
    return json.dumps([user, {"role": "agent", "text": f"[echo] {text}", "at": at + 0.5}] if reply else [user])


def history_rows(
    start: int, stop: int, *, make_id: Callable[[int], str], base: float, retired: bool = False
) -> Iterator[Row]:
    """Finished executions ``start`` .. ``stop - 1``, one a second from ``base``: the agents take
    turns (RARE_AGENT every 1000th), or all RETIRED_AGENT's."""
    for index in range(start, stop):
        at = base + index
        id = make_id(index)
        agent = RETIRED_AGENT if retired else RARE_AGENT if index % 1000 == 999 else f"agent-{index % 10}"
        kind = index % 100
        phase, error = ("FAILED", "the agent failed: bench") if kind < 2 else (
            ("CANCELLED", "cancelled by bench") if kind == 2 else ("COMPLETED", ""))  # fmt: skip
        text = f"bench row {index}: summarise the quarterly report"
        yield (id, agent, text, "{}", phase, _messages(text, at, phase == "COMPLETED"), error, at, at + 0.1,
               at + 0.6, f"stigmer/agent-execution/invoke/{id}", "", 3, None, "",
               at + 0.3 if phase == "CANCELLED" else None, "bench" if phase == "CANCELLED" else "", "")  # fmt: skip


def unfinished_rows(count: int, *, make_id: Callable[[int], str], base: float) -> Iterator[Row]:
    """Half PENDING, half IN_PROGRESS (alternating), no cancel requested, no parent."""
    for index in range(count):
        at = base + index
        id = make_id(index)
        pending = index % 2 == 0
        text = f"unfinished {index}"
        yield (id, f"agent-{index % 10}", text, "{}", "PENDING" if pending else "IN_PROGRESS",
               _messages(text, at, False), "", at, None if pending else at + 0.1, None,
               f"stigmer/agent-execution/invoke/{id}", "", 1 if pending else 2, None, "", None, "", "")  # fmt: skip


def _batches(rows: Iterable[Row], size: int = BATCH) -> Iterator[list[Row]]:
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


class Bulk:
    """One backend's store for bulk loading: schema made by Store itself, rows written with SQL."""

    def __init__(self, backend: str, *, data_dir: Path, database: PostgresDatabase | None) -> None:
        self.backend = backend
        self.data_dir = data_dir
        self.database = database
        self.url = database.url if database is not None else None
        Store.connect(self.url, data_dir=data_dir).close()  # creates the schema

    def open(self) -> Store:
        return Store.connect(self.url, data_dir=self.data_dir)

    def insert(self, rows: Iterable[Row]) -> float:
        """Seconds to write ``rows`` (and, for PostgreSQL, VACUUM ANALYZE the table), every index in place."""
        started = time.perf_counter()
        if self.database is None:
            conn = sqlite3.connect(self.data_dir / "stigmer.db", isolation_level=None)
            try:
                conn.execute("PRAGMA synchronous = NORMAL")
                insert = f"INSERT INTO agent_executions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
                for batch in _batches(rows):
                    conn.execute("BEGIN IMMEDIATE")
                    conn.executemany(insert, batch)
                    conn.execute("COMMIT")
            finally:
                conn.close()
        else:
            with self.database.connect(statement_timeout=900) as conn:
                for batch in _batches(rows):
                    with (
                        conn.transaction(),
                        conn.cursor().copy(f"COPY agent_executions ({', '.join(COLUMNS)}) FROM STDIN") as copy,
                    ):
                        for row in batch:
                            copy.write_row(row)
                conn.execute("VACUUM (ANALYZE) agent_executions")
        return time.perf_counter() - started

    def insert_buffers(self) -> int:
        """PostgreSQL: shared buffers one INSERT touches (heap and every index), rolled back."""
        assert self.database is not None
        (row,) = history_rows(0, 1, make_id=lambda _: new_id("aex"), base=time.time())
        insert = f"INSERT INTO agent_executions ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"
        with self.database.connect(autocommit=False) as conn:
            for _ in range(2):  # the second: the first also reads the catalogs into this connection's caches
                found = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {insert}", row).fetchone()
                conn.rollback()
        assert found is not None
        top = found[0][0]["Plan"]
        return int(top.get("Shared Hit Blocks", 0)) + int(top.get("Shared Read Blocks", 0))

    def plan(self, agent: str, *, size: int = 50) -> str:
        """The plan of one List page filtered by agent (the statement paging.select_page runs)."""
        query = "SELECT * FROM agent_executions WHERE agent = ? ORDER BY id DESC LIMIT ?"
        if self.database is None:
            with contextlib.closing(sqlite3.connect(self.data_dir / "stigmer.db")) as conn:
                rows = conn.execute(f"EXPLAIN QUERY PLAN {query}", (agent, size + 1)).fetchall()
            return "; ".join(str(row[-1]) for row in rows)
        with self.database.connect() as conn:
            explain = f"EXPLAIN (ANALYZE, FORMAT JSON) {query.replace('?', '%s')}"
            found = conn.execute(explain, (agent, size + 1)).fetchone()
        assert found is not None
        return _pg_plan(found[0][0]["Plan"])


def _pg_plan(node: dict[str, Any]) -> str:
    """'Limit -> Sort -> Bitmap Heap Scan -> ...' from EXPLAIN ANALYZE's JSON (the first child of each node)."""
    parts = []
    while True:
        label = node["Node Type"]
        if "Index Name" in node:
            label += f" ({node['Index Name']})"
        if "Filter" in node:
            label += f" filter {node['Filter']}"
        if node.get("Rows Removed by Filter"):
            label += f", {node['Rows Removed by Filter']:,} rows read and dropped"
        if node.get("Actual Rows") is not None and "Plans" not in node:
            label += f", {node['Actual Rows']:,} rows, {node['Actual Total Time']:.1f} ms"
        parts.append(label)
        children = node.get("Plans") or []
        if not children:
            return " -> ".join(parts)
        node = children[0]


# ------------------------------------------------------------------------------ b. list


def _time_calls(call: Callable[[], object], *, reps: int, budget: float) -> list[float]:
    """Up to ``reps`` timed calls (at least 5), stopping after ``budget`` seconds; one untimed first."""
    call()
    samples: list[float] = []
    deadline = time.perf_counter() + budget
    while len(samples) < reps and (len(samples) < 5 or time.perf_counter() < deadline):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return samples


LIST_QUERIES: tuple[tuple[str, dict[str, str]], ...] = (
    ("newest 50", {}),
    ("agent (10 %)", {"agent": COMMON_AGENT}),
    ("agent (0.1 %)", {"agent": RARE_AGENT}),
    ("agent (2 %, all old)", {"agent": RETIRED_AGENT}),
)


def _expected(filters: dict[str, str], size: int) -> int:
    """Records on the first page of 50 at ``size`` rows."""
    main = size - size // RETIRED_SHARE
    found = {"": main, COMMON_AGENT: main, RARE_AGENT: main // 1000, RETIRED_AGENT: size // RETIRED_SHARE}
    return min(50, found[filters.get("agent", "")])


def _list_backend(
    ctx: Context, backend: str, database: PostgresDatabase | None, sizes: Sequence[int], reps: int
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    bulk = Bulk(backend, data_dir=ctx.workdir / f"store-b-{backend.lower()}", database=database)
    base = time.time() - sizes[-1] - 86_400  # the rows are history: all older than anything made later
    make_id = _ids(int(base * 1000))
    retired_base = base - 2 * sizes[-1]  # the retired agent's rows: older still
    make_retired_id = _ids(int(retired_base * 1000))
    rows: list[dict[str, Any]] = []
    have, have_retired = 0, 0
    for size in sizes:
        main, retired = size - size // RETIRED_SHARE, size // RETIRED_SHARE
        new = itertools.chain(
            history_rows(have, main, make_id=make_id, base=base),
            history_rows(have_retired, retired, make_id=make_retired_id, base=retired_base, retired=True),
        )
        took = bulk.insert(new)
        ctx.say(f"{NAME}: list: {backend}: {size - have - have_retired} rows inserted in {took:.1f} s")
        have, have_retired = main, retired
        opened = time.perf_counter()
        with bulk.open() as store:
            row: dict[str, Any] = {"backend": backend, "rows": size, "insert": took,
                                   "open": time.perf_counter() - opened}  # fmt: skip
            for label, filters in LIST_QUERIES:
                page, _ = store.list_agent_executions(page_size=50, **filters)
                expected = _expected(filters, size)
                if len(page) != expected:
                    raise AssertionError(f"{backend} {label} at {size}: {len(page)} records, expected {expected}")
                row[label] = _time_calls(
                    lambda f=filters: store.list_agent_executions(page_size=50, **f), reps=reps, budget=5.0
                )
            numbers = itertools.count()
            row["create"] = _time_calls(
                lambda n=numbers: store.create_agent_execution(agent="agent-new", message=f"new {next(n)}"),
                reps=reps,
                budget=5.0,
            )
        if database is not None:
            row["buffers"] = bulk.insert_buffers()
        rows.append(row)
    plans = {label: bulk.plan(filters["agent"]) for label, filters in LIST_QUERIES if filters}
    return rows, plans


async def listing(ctx: Context, pg: PostgresServer) -> list[Table]:
    sizes = (1_000, 100_000) if ctx.quick else (1_000, 100_000, 1_000_000)
    reps = ctx.repetitions(full=200, quick=50)
    database = await asyncio.to_thread(pg.create_database)
    results: list[dict[str, Any]] = []
    plans: dict[str, dict[str, str]] = {}
    for backend, db in ((SQLITE, None), (POSTGRES, database)):
        rows, plans[backend] = await asyncio.to_thread(_list_backend, ctx, backend, db, sizes, reps)
        results += rows
    with contextlib.suppress(Exception):  # a million rows of scratch: give the disk back
        await asyncio.to_thread(database.drop)
    return [list_table(results, plans, largest=sizes[-1])]


def list_table(results: list[dict[str, Any]], plans: dict[str, dict[str, str]], *, largest: int) -> Table:
    headers = ["rows", "backend", "bulk insert (this step)", "Store open"]
    for label, _ in LIST_QUERIES:
        headers += [f"{label} p50", "p99"]
    headers += ["Store create p50", "p99", "goal p50 <= 5 ms at 100k"]
    table = Table("Benchmark 10b: List one page of 50 on the store (Store.list_agent_executions)", headers)
    for row in sorted(results, key=lambda r: (r["rows"], BACKENDS.index(r["backend"]))):
        cells: list[object] = [f"{row['rows']:,}", row["backend"], fmt_seconds(row["insert"]), fmt_seconds(row["open"])]
        missed = []
        for label, _ in LIST_QUERIES:
            summary = Summary.of(row[label])
            cells += [fmt_ms(summary.median), fmt_ms(summary.p99)]
            if not summary.median <= LIST_GOAL_S:
                missed.append(label)
        judged = "met" if not missed else f"**missed** ({', '.join(missed)})"
        created = Summary.of(row["create"])
        cells += [fmt_ms(created.median), fmt_ms(created.p99), judged if row["rows"] == 100_000 else "-"]
        table.add(*cells)
    table.notes.append(
        "rows added to the same table step by step (SQLite executemany / PostgreSQL COPY, 50k rows a transaction; "
        "every index in place, as a server has them; PostgreSQL's time includes VACUUM (ANALYZE)); each figure "
        "from up to 200 calls (5 s at most), after one untimed call; the goal judges every query. Agents take "
        "turns (10 of them, ~10 % each; one more "
        f"every 1000th row); {RETIRED_AGENT} holds 2 % of the rows, all older than the others' (an agent not run "
        "lately: its newest page is at the far end of the id order)."
    )
    table.notes.append(
        "Store create: Store.create_agent_execution (one transaction: INSERT and read back), timed like the lists, "
        "after them (agent-new, parent_id '' like every top-level execution)."
    )
    buffers = [f"{row['buffers']:,} at {row['rows']:,}" for row in results if "buffers" in row]
    if buffers:
        table.notes.append(
            f"PostgreSQL: shared buffers one INSERT touches (EXPLAIN ANALYZE, BUFFERS): {', '.join(buffers)} rows."
        )
    for backend, found in plans.items():
        for label, plan in found.items():
            table.notes.append(f"{backend} plan, {label} at {largest:,} rows: {plan}")
    return table


# ------------------------------------------------------------------------------ c. reconcile

RECONCILED = "Reconciled unfinished executions"
PACE = 0.05  # seconds between the probing creates


class LogFollower:
    """Reads a server's log as it grows (offset kept, so a 10k-line log is not read again and again)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0
        self._partial = ""

    def new_lines(self) -> list[str]:
        try:
            with self._path.open("rb") as log:
                log.seek(self._offset)
                data = log.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        text = self._partial + data.decode(errors="replace")
        lines = text.split("\n")
        self._partial = lines.pop()
        return lines


def log_time(line: str) -> float:
    """Wall time of a text log line ('2026-01-02 03:04:05.678 [INFO] ...', local time)."""
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S.%f").timestamp()


async def _paced_creates(
    api: StigmerApi, *, stop: asyncio.Event, limit: int | None = None
) -> list[tuple[float, float | None]]:
    """A create at most every PACE s (never catching up after a slow one) until ``stop`` or ``limit``:
    (wall start, latency or None)."""
    samples: list[tuple[float, float | None]] = []
    last = -math.inf
    for index in itertools.count():
        if stop.is_set() or (limit is not None and index >= limit):
            break
        await asyncio.sleep(max(0.0, last + PACE - time.monotonic()))
        last = time.monotonic()
        at, started = time.time(), time.perf_counter()
        latency: float | None
        try:
            await api.create(f"probe {index}", timeout=10.0)
            latency = time.perf_counter() - started
        except grpc.aio.AioRpcError:
            latency = None
        samples.append((at, latency))
    return samples


async def _reconcile_backend(
    ctx: Context, temporal: TemporalDevServer, backend: str, database: PostgresDatabase | None, count: int,
    *, patience: float,
) -> dict[str, Any]:  # fmt: skip
    name = f"store-c-{backend.lower()}"
    bulk = await asyncio.to_thread(Bulk, backend, data_dir=ctx.workdir / name, database=database)
    base = time.time() - 2 * count - 3600
    inserted = await asyncio.to_thread(bulk.insert, unfinished_rows(count, make_id=_ids(int(base * 1000)), base=base))

    def scan() -> list[float]:
        with bulk.open() as store:
            found = len(store.unfinished_agent_executions())
            if found != count:
                raise AssertionError(f"{backend}: {found} unfinished, expected {count}")
            return _time_calls(store.unfinished_agent_executions, reps=5, budget=10.0)

    result: dict[str, Any] = {
        "backend": backend,
        "count": count,
        "insert": inserted,
        "scan": await asyncio.to_thread(scan),
    }
    with contextlib.ExitStack() as stack:
        server = await asyncio.to_thread(_start, stack, ctx, temporal, name, database=database, patch=_noexec())
        api = StigmerApi(server.address)
        stop = asyncio.Event()
        load: asyncio.Task[list[tuple[float, float | None]]] | None = None
        try:
            status = await api.wait_state("CONNECTED", timeout=60, interval=0.02)
            connected = max(wall(t.at) for t in status.recent_transitions if t.dest == "CONNECTED")
            load = asyncio.create_task(_paced_creates(api, stop=stop))  # from CONNECTED on (polled every 20 ms)
            follower = LogFollower(server.server.log_path)
            deadline = time.monotonic() + patience
            done_line = ""
            settled = 0
            while not done_line and time.monotonic() < deadline:
                for line in await asyncio.to_thread(follower.new_lines):
                    if "Reconciler started the workflow of" in line or "Reconciler marked" in line:
                        settled += 1
                    elif RECONCILED in line:
                        done_line = line
                if not done_line:
                    await asyncio.sleep(0.2)
            stop.set()
            during = await load
            finished = log_time(done_line) if done_line else time.time()
            summary = done_line.partition(RECONCILED + ": ")[2].split("  [")[0]
            result.update(connected=connected, finished=finished, complete=bool(done_line), settled=settled,
                          summary=summary)  # fmt: skip
            result["during"] = [lat for at, lat in during if lat is not None and connected <= at <= finished - lat]
            result["failed_during"] = sum(1 for at, lat in during if lat is None and at >= connected)
            idle_count = max(200, min(len(result["during"]), 600))
            ctx.say(f"{NAME}: reconcile {backend}: pass {'done' if done_line else 'NOT done'} after "
                    f"{finished - connected:.1f} s ({settled} settled); {idle_count} idle creates next")  # fmt: skip
            idle = await _paced_creates(api, stop=asyncio.Event(), limit=idle_count)
            result["idle"] = [lat for _, lat in idle]
        finally:
            stop.set()
            if load is not None and not load.done():
                load.cancel()
                with contextlib.suppress(BaseException):
                    await load
            await api.close()
    return result


async def reconcile(ctx: Context, temporal: TemporalDevServer, pg: PostgresServer) -> list[Table]:
    count = ctx.repetitions(full=10_000, quick=2_000)
    patience = 240.0 if ctx.quick else 600.0
    database = await asyncio.to_thread(pg.create_database)
    results = []
    for backend, db in ((SQLITE, None), (POSTGRES, database)):
        results.append(await _reconcile_backend(ctx, temporal, backend, db, count, patience=patience))
    return [reconcile_table(results, patience=patience)]


def reconcile_table(results: list[dict[str, Any]], *, patience: float) -> Table:
    table = Table(
        "Benchmark 10c: Reconciler start with unfinished executions (half PENDING, half IN_PROGRESS, unknown to "
        "Temporal)",
        ["backend", "unfinished", "unfinished_agent_executions() p50", "CONNECTED -> Reconciled", "per execution",
         "create p50 / p99 during the pass", "create p50 / p99 idle", "p99 ratio", "goals (pass <= 10 s at 10k; "
         "p99 <= 2x idle)"],
    )  # fmt: skip
    for r in results:
        scan = Summary.of(r["scan"])
        took = r["finished"] - r["connected"]
        done = r["settled"] if not r["complete"] else r["count"]
        per = took / done if done else math.nan
        during, idle = Summary.of(r["during"]), Summary.of(r["idle"])
        worse = ratio(during.p99, idle.p99)
        pass_ok = bool(r["complete"]) and took * 10_000 / r["count"] <= RECONCILE_GOAL_S
        p99_ok = None if math.isnan(worse) else worse <= CREATE_P99_GOAL
        pass_text = fmt_seconds(took) if r["complete"] else f"> {fmt_seconds(took)} (not done, {r['settled']} settled)"
        table.add(r["backend"], f"{r['count']:,}", fmt_ms(scan.median), pass_text, fmt_ms(per),
                  f"{fmt_ms(during.median)} / {fmt_ms(during.p99)} (n={during.n})",
                  f"{fmt_ms(idle.median)} / {fmt_ms(idle.p99)} (n={idle.n})", fmt_ratio(worse),
                  f"pass {verdict(pass_ok)}, p99 {verdict(p99_ok)}")  # fmt: skip
        if r["summary"]:
            table.notes.append(f"{r['backend']}: the server's summary: {r['summary']}; "
                               f"{r['failed_during']} probe creates failed during the pass.")  # fmt: skip
    table.notes.append(
        "servers with noexec: the restarted workflows are not executed (their queue is not polled), so the pass is "
        "timed alone, not the work it restarts; one probe create at a time, one every 50 ms, from the benchmark "
        "process during the pass and then idle (same server, same pace). CONNECTED from GetStatus (polled every "
        "20 ms), the end from the log line's time."
    )
    table.notes.append(f"the pass is waited for {patience:g} s at most; with fewer than 10k executions the pass goal "
                       "is judged on the time scaled to 10k.")  # fmt: skip
    return table


# ------------------------------------------------------------------------------ d. memory of a long Watch

WARMUP_S = 20.0
RATE = 2.0  # creates per second on each server, executed to COMPLETED


async def _traffic(api: StigmerApi, *, stop: asyncio.Event) -> int:
    """A create every 1/RATE s until ``stop``; the count made."""
    made = 0
    begin = time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(max(0.0, begin + made / RATE - time.monotonic()))
        with contextlib.suppress(grpc.aio.AioRpcError):
            await api.create(f"traffic {made}", timeout=10.0)
        made += 1
    return made


async def _watch(address: str, seen: list[float], opened: asyncio.Event, *, timeout: float) -> None:  # noqa: ASYNC109
    """Create an agent that runs 300 s and follow it with one Watch (``opened`` set once it streams)."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = agent_execution_pb2_grpc.AgentExecutionServiceStub(channel)
        create = agent_execution_pb2.CreateAgentExecutionRequest(agent="echo", message="long",
                                                                 runtime_env={DELAY_ENV: "300"})  # fmt: skip
        created = await stub.Create(create, timeout=10.0)
        async for _ in stub.Watch(agent_execution_pb2.WatchAgentExecutionRequest(id=created.id), timeout=timeout):
            seen.append(time.monotonic())
            opened.set()


async def watch_memory(ctx: Context, temporal: TemporalDevServer, pg: PostgresServer) -> list[Table]:
    window = 60.0 if ctx.quick else 240.0
    with contextlib.ExitStack() as stack:
        database = await asyncio.to_thread(pg.create_database)
        servers = {
            SQLITE: await asyncio.to_thread(_start, stack, ctx, temporal, "store-d-sqlite", database=None, patch=None),
            POSTGRES: await asyncio.to_thread(_start, stack, ctx, temporal, "store-d-pg", database=database,
                                              patch=None),
        }  # fmt: skip
        apis = {backend: StigmerApi(server.address) for backend, server in servers.items()}
        stop = asyncio.Event()
        traffic: list[asyncio.Task[int]] = []
        watches: dict[str, asyncio.Task[None]] = {}
        try:
            for api in apis.values():
                await api.wait_state("CONNECTED", timeout=30)
            traffic = [asyncio.create_task(_traffic(api, stop=stop)) for api in apis.values()]
            await asyncio.sleep(WARMUP_S)
            seen: dict[str, list[float]] = {backend: [] for backend in BACKENDS}
            for backend, server in servers.items():
                opened = asyncio.Event()
                watches[backend] = asyncio.create_task(
                    _watch(server.address, seen[backend], opened, timeout=window + 60)
                )
                await asyncio.wait_for(opened.wait(), timeout=15)
            samples: dict[str, list[procs.ProcSample]] = {backend: [] for backend in BACKENDS}
            begin = time.monotonic()
            while True:
                now = time.monotonic()
                for backend, server in servers.items():
                    samples[backend].append(procs.sample(server.pid, at=now))
                if now - begin >= window:
                    break
                await asyncio.sleep(min(2.0, max(0.0, begin + window - time.monotonic())))
            open_at_end = {backend: not task.done() for backend, task in watches.items()}
            stop.set()
            made = [await task for task in traffic]
            await asyncio.sleep(2.0)  # the last creates' executions finish
            left = {backend: await api.unfinished() for backend, api in apis.items()}
        finally:
            stop.set()
            for task in (*traffic, *watches.values()):
                task.cancel()
            for task in (*traffic, *watches.values()):
                with contextlib.suppress(BaseException):
                    await task
            for api in apis.values():
                await api.close()
    made_by = dict(zip(apis, made, strict=True))
    return [watch_table(samples, seen, open_at_end, made=made_by, left=left, window=window)]


def watch_table(
    samples: dict[str, list[procs.ProcSample]], seen: dict[str, list[float]], open_at_end: dict[str, bool],
    *, made: dict[str, int], left: dict[str, int], window: float,
) -> Table:  # fmt: skip
    table = Table(
        f"Benchmark 10d: Server RSS while one Watch stays open {window / 60:g} min, changes flowing to other records",
        ["backend", "RSS at Watch open", "after 1 min", "at the end", "max", "end - start", "creates in all",
         "unfinished after", "Watch messages", "Watch open at the end"],
    )  # fmt: skip
    for backend in BACKENDS:
        rss = [s.rss_bytes / 2**20 for s in samples[backend]]
        first = samples[backend][0].at
        minute = next((s.rss_bytes / 2**20 for s in samples[backend] if s.at - first >= 60.0), rss[-1])
        table.add(backend, f"{rss[0]:.0f} MB", f"{minute:.0f} MB", f"{rss[-1]:.0f} MB", f"{max(rss):.0f} MB",
                  f"{rss[-1] - rss[0]:+.1f} MB", made[backend], left[backend], len(seen[backend]),
                  "yes" if open_at_end[backend] else "no")  # fmt: skip
    table.notes.append(
        f"both servers at once, executing (defaults); {RATE:g} creates/s on each from the benchmark process "
        f"(COMPLETED within a second), {WARMUP_S:g} s of it before the Watch opened; RSS from /proc every 2 s. "
        "The Watch follows an echo agent that runs 300 s (IN_PROGRESS for the whole window: the 1 unfinished after)."
    )
    return table
