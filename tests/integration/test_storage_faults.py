"""Storage faults: a broken database file or an unwritable data dir at start, a full disk or a data
dir turned read-only while serving.

At start the real `stigmer server start` process must refuse to run: exit 78 (EX_CONFIG) with a
message naming the file and what to do, the file left exactly as it was, nothing reset. While
serving, creates must fail with a clear status -- RESOURCE_EXHAUSTED for a full disk,
FAILED_PRECONDITION for any other storage failure, never INTERNAL and never UNAVAILABLE (which
clients read as "Temporal is down") -- leave nothing half-written, and work again once the
operator has fixed the disk.

A full disk is a real one where possible: a 16 MiB tmpfs mounted for the test (needs root and
`mount`), filled to the last byte. Everywhere, SQLite's max_page_count on the store's connection
gives SQLite's own "database or disk is full" the same way. "Read-only while serving" is
`chattr +i` on the database and its WAL (root only); never on the -shm file, which SQLite maps
into memory: a write through that mapping to an immutable file kills the process with SIGBUS
(seen while writing this test), which no server can handle.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest

from stigmer.api import agent_execution_pb2 as aex
from stigmer.api import common_pb2
from stigmer.api import workflow_execution_pb2 as wex
from stigmer.api import workflow_pb2 as wf
from stigmer.errors import ExitCode
from stigmer.store import Store
from stigmer.testing.ports import free_port
from stigmer.testing.server import stigmer_binary
from tests.integration.connection_rig import fast_settings
from tests.integration.test_servicers import CALL, WATCH, Stack, document, serving, watch_all
from tests.unit.test_store import read_only_dir

pytestmark = [pytest.mark.timeout(120)]

PAYLOAD = 600 * 1024  # bigger than the WAL a few small writes leave behind, under every 1 MiB limit
Code = grpc.StatusCode


# ---------------------------------------------------------------------------------------- at start


def start_server(data_dir: Path) -> subprocess.CompletedProcess[str]:
    """`stigmer server start` on free ports; it must exit by itself (subprocess.run kills it on timeout)."""
    args = [stigmer_binary(), "server", "start", "--data-dir", str(data_dir),
            "--address", f"127.0.0.1:{free_port()}", "--temporal-host-port", f"127.0.0.1:{free_port()}"]  # fmt: skip
    return subprocess.run(args, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                          env={**os.environ, "NO_COLOR": "1"})  # fmt: skip


def snapshot(data_dir: Path) -> dict[str, tuple[str, int]]:
    """Every file in the dir: its hash and modification time (ns)."""
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(data_dir.iterdir()) if p.is_file()}  # fmt: skip


def real_database(data_dir: Path) -> Path:
    """A database with some records, checkpointed into the one file."""
    with Store.open(data_dir) as store:
        for i in range(200):
            store.create_agent_execution(agent="echo", message=f"message {i} " * 50)
    return data_dir / "stigmer.db"


def random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(64 * 1024))


def half_of_it(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def first_page_only(path: Path) -> None:
    os.truncate(path, 4096)


def damaged_page(path: Path) -> None:
    with path.open("r+b") as f:
        f.seek((path.stat().st_size // 4096 // 2) * 4096)
        f.write(b"\x00" * 4096)


def foreign_sqlite(path: Path) -> None:
    path.unlink()
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    conn.close()


@pytest.mark.parametrize(
    ("damage", "says"),
    [(random_bytes, "move it aside"), (half_of_it, "move it aside"), (first_page_only, "move it aside"),
     (damaged_page, "move it aside"), (foreign_sqlite, "not a stigmer one")],
    ids=["random-bytes", "truncated-to-half", "first-page-only", "zeroed-page", "another-apps-sqlite"],
)  # fmt: skip
def test_a_broken_database_file_stops_the_server_naming_it(tmp_path: Path, damage: Any, says: str) -> None:
    data_dir = tmp_path / "data"
    path = real_database(data_dir)
    damage(path)
    before = snapshot(data_dir)
    done = start_server(data_dir)
    output = done.stdout + done.stderr
    assert done.returncode == ExitCode.CONFIG, output
    assert "Cannot open the data store" in output and str(path) in output and says in output, output
    assert "started successfully" not in output and "Traceback" not in output, output
    assert snapshot(data_dir) == before, "the broken file was modified or a new one was created"


@pytest.mark.parametrize("with_database", [False, True], ids=["empty-dir", "dir-with-database"])
def test_a_read_only_data_dir_stops_the_server_naming_it(tmp_path: Path, with_database: bool) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if with_database:
        real_database(data_dir)
    before = snapshot(data_dir)
    with read_only_dir(data_dir):
        done = start_server(data_dir)
    output = done.stdout + done.stderr
    assert done.returncode == ExitCode.CONFIG, output
    assert str(data_dir / "stigmer.db") in output and "writable" in output, output
    assert "started successfully" not in output and "Traceback" not in output, output
    assert snapshot(data_dir) == before


# ---------------------------------------------------------------------------------------- while serving


@contextmanager
def tiny_tmpfs(where: Path, *, size: str = "16m") -> Iterator[Path]:
    """A real, small file system mounted for the test; skips where mounting is not allowed."""
    mount = shutil.which("mount")
    if os.geteuid() != 0 or mount is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    where.mkdir(parents=True)
    done = subprocess.run([mount, "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
                          capture_output=True, text=True, timeout=10)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True, timeout=10).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=10, check=True)


def fill(directory: Path) -> Path:
    """Write a file until the file system has no byte left (ENOSPC); return it."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as f:
        for chunk in (1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return filler


async def create_all(stack: Stack, workflow_name: str) -> dict[str, Any]:
    """One create of each kind, each with a payload that needs new space on disk: outcome by kind."""
    big = "x" * PAYLOAD
    calls = {
        "agent execution": stack.agent_executions.Create(
            aex.CreateAgentExecutionRequest(agent="echo", message=big), timeout=CALL),
        "workflow": stack.workflows.Create(
            wf.CreateWorkflowRequest(document=document(f"big-{uuid.uuid4().hex[:8]}", description=big)), timeout=CALL),
        "workflow execution": stack.workflow_executions.Create(
            wex.CreateWorkflowExecutionRequest(workflow=workflow_name, input=json.dumps({"user": big})), timeout=CALL),
    }  # fmt: skip
    outcomes: dict[str, Any] = {}
    for what, call in calls.items():
        try:
            outcomes[what] = await call
        except grpc.aio.AioRpcError as error:
            outcomes[what] = error
    return outcomes


async def counts(stack: Stack) -> tuple[int, int, int]:
    """Records of each kind, read through the API (reads keep working whatever the disk does)."""
    a = await stack.agent_executions.List(aex.ListAgentExecutionsRequest(page_size=1000), timeout=CALL)
    w = await stack.workflows.List(wf.ListWorkflowsRequest(page_size=1000), timeout=CALL)
    x = await stack.workflow_executions.List(wex.ListWorkflowExecutionsRequest(page_size=1000), timeout=CALL)
    return len(a.executions), len(w.workflows), len(x.executions)


def integrity(path: Path) -> str:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        result = conn.execute("PRAGMA integrity_check").fetchone()[0]
    conn.close()
    return str(result)


async def check_refused_then_recovered(stack: Stack, *, break_it: Any, fix_it: Any, code: Code, says: str) -> None:
    """Creates fail with ``code`` while broken, naming the file; nothing is half-written; then they work."""
    name = f"stored-{uuid.uuid4().hex[:8]}"
    await stack.workflows.Create(wf.CreateWorkflowRequest(document=document(name)), timeout=CALL)
    before = await counts(stack)
    break_it()
    try:
        outcomes = await create_all(stack, name)
        for what, outcome in outcomes.items():
            assert isinstance(outcome, grpc.aio.AioRpcError), f"{what} was created on a broken store"
            assert outcome.code() == code, (what, outcome.code(), outcome.details())
            assert str(stack.store.path) in outcome.details() and says in outcome.details(), outcome.details()
            print(f"{what}: {outcome.code().name}: {outcome.details()}")
        # Reads still answer; nothing of the refused creates was stored.
        assert await counts(stack) == before
        checked = await stack.workflows.Validate(wf.ValidateWorkflowRequest(document=document("v")), timeout=CALL)
        assert checked.valid
    finally:
        fix_it()
    assert integrity(stack.store.path) == "ok"
    outcomes = await create_all(stack, name)
    assert not [o for o in outcomes.values() if isinstance(o, grpc.aio.AioRpcError)], outcomes
    assert await counts(stack) == (before[0] + 1, before[1] + 1, before[2] + 1)
    run = outcomes["agent execution"]
    stream = await watch_all(stack.agent_executions.Watch(aex.WatchAgentExecutionRequest(id=run.id), timeout=WATCH))
    assert stream[-1].phase == common_pb2.COMPLETED and stream[-1].messages[-1].text == f"[echo] {'x' * PAYLOAD}"


@pytest.mark.temporal
async def test_disk_full_on_a_real_tiny_file_system(temporal, tmp_path: Path) -> None:
    with tiny_tmpfs(tmp_path / "tmpfs") as mounted:
        async with serving(fast_settings(temporal.address), mounted / "data") as stack:
            await stack.connected()
            filler: list[Path] = []
            await check_refused_then_recovered(
                stack,
                break_it=lambda: filler.append(fill(mounted)),
                fix_it=lambda: [f.unlink() for f in filler],
                code=Code.RESOURCE_EXHAUSTED,
                says="is full",
            )


@pytest.mark.temporal
async def test_disk_full_by_sqlite_page_limit(temporal, tmp_path: Path) -> None:
    async with serving(fast_settings(temporal.address), tmp_path / "data") as stack:
        await stack.connected()

        def limit(pages: int | None) -> None:
            # Under the store's own lock, on the store's own connection (the limit is per connection).
            with stack.store._db.read("set the page limit") as conn:
                current = conn.execute("PRAGMA page_count").fetchone()[0]
                conn.execute(f"PRAGMA max_page_count = {current if pages is None else pages}")

        await check_refused_then_recovered(
            stack, break_it=lambda: limit(None), fix_it=lambda: limit(1_073_741_823),
            code=Code.RESOURCE_EXHAUSTED, says="is full",
        )  # fmt: skip


@pytest.mark.temporal
async def test_data_dir_turned_read_only_while_serving(temporal, tmp_path: Path) -> None:
    chattr = shutil.which("chattr")
    if os.geteuid() != 0 or chattr is None:
        pytest.skip("making open files read-only needs root and chattr(1)")
    data_dir = tmp_path / "data"
    async with serving(fast_settings(temporal.address), data_dir) as stack:
        await stack.connected()
        # Not stigmer.db-shm: see the module docstring.
        targets = [str(data_dir / "stigmer.db"), str(data_dir / "stigmer.db-wal"), str(data_dir)]

        def set_immutable(flag: str) -> None:
            done = subprocess.run([chattr, flag, *targets], capture_output=True, text=True, timeout=10)
            if done.returncode != 0 and flag == "+i":
                subprocess.run([chattr, "-i", *targets], capture_output=True, timeout=10)
                pytest.skip(f"chattr +i is not supported here: {done.stderr.strip()}")
            done.check_returncode()

        await check_refused_then_recovered(
            stack, break_it=lambda: set_immutable("+i"), fix_it=lambda: set_immutable("-i"),
            code=Code.FAILED_PRECONDITION, says="I/O error",
        )  # fmt: skip
