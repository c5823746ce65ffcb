"""The SQLite store: records, paging, idempotent transitions, text fidelity, failure reporting,
listeners and concurrency. Every test uses its own tmp_path database."""

from __future__ import annotations

import base64
import os
import shutil
import sqlite3
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loguru import logger

from stigmer.errors import AlreadyExistsError, DatabaseError, NotFoundError
from stigmer.store import AGENT_EXECUTION, WORKFLOW_EXECUTION, Message, Phase, Store, TaskStatus, Workflow, is_valid_id
from stigmer.store import schema as schema_module

TRICKY_TEXTS = [
    "héllo wörld — ünïcödé ✓ 你好 مرحبا 🚀👩‍👩‍👧 e\u0301",
    'it\'s "quoted" `backticked` \\ back\\slash',
    "'; DROP TABLE agent_executions; --",
    "Robert'); DROP TABLE workflows;--",
    "line1\nline2\r\nline3\ttab",
    '{"json": ["looking", 1, null]}',
    "   leading and trailing spaces   ",
    "with NUL \x00 inside",
    "x" * 1_000_000,
]


def reply(text: str, at: float = 2.0) -> Message:
    return Message(role="agent", text=text, at=at)


def make_workflow(store: Store, name: str = "wf-one") -> Workflow:
    return store.create_workflow(name=name, document='{"do": []}', valid=True)


def start_wex(store: Store, tasks: list[str] | None = None) -> str:
    names = tasks or ["a", "b"]
    wex = store.create_workflow_execution(
        workflow=make_workflow(store), input="{}", task_names_kinds=[(n, "set") for n in names]
    )
    return wex.id


def table_names(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


# -- opening -------------------------------------------------------------------------------------


def test_open_creates_dir_wal_database_and_schema_version(tmp_path: Path) -> None:
    data = tmp_path / "a" / "b"
    with Store.open(data) as store:
        assert store.path == data / "stigmer.db"
    conn = sqlite3.connect(data / "stigmer.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(schema_module.SCHEMA_VERSION,)]
    finally:
        conn.close()


def test_reopen_keeps_records(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        created = store.create_agent_execution(agent="a", message="m", runtime_env={"K": "V"})
    with Store.open(tmp_path) as store:
        assert store.get_agent_execution(created.id) == created


def test_close_is_idempotent_and_use_after_close_is_a_store_error(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    store.close()
    store.close()
    assert store.closed
    with pytest.raises(DatabaseError, match="closed"):
        store.list_agent_executions()


def test_empty_file_is_initialised_as_a_new_database(tmp_path: Path) -> None:
    # SQLite itself treats a 0-byte file as an empty database: there is nothing to lose.
    (tmp_path / "stigmer.db").touch()
    with Store.open(tmp_path) as store:
        assert store.list_workflows() == ([], "")


def _assert_refused_untouched(tmp_path: Path, *, match: str) -> DatabaseError:
    path = tmp_path / "stigmer.db"
    before = path.read_bytes()
    with pytest.raises(DatabaseError, match=match) as info:
        Store.open(tmp_path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before, "a refused file must not be modified"
    return info.value


@pytest.mark.parametrize(
    "content",
    [os.urandom(8192), b"hello, I am a text file\n" * 200, b"SQLite format 3\x00" + b"\x00" * 30],
    ids=["random-bytes", "text-file", "bare-header"],
)
def test_foreign_file_is_refused_with_advice(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "stigmer.db").write_bytes(content)
    _assert_refused_untouched(tmp_path, match="move it aside")


def _filled_database(tmp_path: Path) -> Path:
    with Store.open(tmp_path) as store:
        for i in range(300):
            store.create_agent_execution(agent="a", message=f"message {i} " * 40)
    path = tmp_path / "stigmer.db"
    assert not (tmp_path / "stigmer.db-wal").exists()  # checkpointed on close: all data in the file
    return path


def test_truncated_file_is_refused(tmp_path: Path) -> None:
    path = _filled_database(tmp_path)
    os.truncate(path, path.stat().st_size // 2)
    _assert_refused_untouched(tmp_path, match="move it aside")


def test_damaged_page_in_the_middle_is_caught_at_open(tmp_path: Path) -> None:
    path = _filled_database(tmp_path)
    pages = path.stat().st_size // 4096
    with path.open("r+b") as f:
        f.seek((pages // 2) * 4096)
        f.write(b"\xff" * 4096)
    _assert_refused_untouched(tmp_path, match="move it aside")


def test_sqlite_file_of_another_application_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "stigmer.db") as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    conn.close()
    _assert_refused_untouched(tmp_path, match="not a stigmer one")


def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    with sqlite3.connect(tmp_path / "stigmer.db") as conn:
        conn.execute("UPDATE schema_version SET version = ?", (schema_module.SCHEMA_VERSION + 1,))
    conn.close()
    error = _assert_refused_untouched(tmp_path, match="newer stigmer")
    assert "Upgrade stigmer" in str(error)


def test_migration_hook_upgrades_older_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Store.open(tmp_path).close()

    def add_column(conn: sqlite3.Connection) -> None:
        conn.execute("ALTER TABLE workflows ADD COLUMN description TEXT NOT NULL DEFAULT ''")

    current = schema_module.SCHEMA_VERSION
    monkeypatch.setattr(schema_module, "SCHEMA_VERSION", current + 1)
    monkeypatch.setattr(schema_module, "MIGRATIONS", {**schema_module.MIGRATIONS, current: add_column})
    Store.open(tmp_path).close()
    with sqlite3.connect(tmp_path / "stigmer.db") as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchone() == (current + 1,)
        assert "description" in {row[1] for row in conn.execute("PRAGMA table_info(workflows)")}
    conn.close()


def test_failed_migration_leaves_file_at_old_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Store.open(tmp_path).close()

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x INTEGER)")
        raise RuntimeError("migration bug")

    current = schema_module.SCHEMA_VERSION
    monkeypatch.setattr(schema_module, "SCHEMA_VERSION", current + 1)
    monkeypatch.setattr(schema_module, "MIGRATIONS", {**schema_module.MIGRATIONS, current: broken})
    with pytest.raises(RuntimeError, match="migration bug"):
        Store.open(tmp_path)
    assert "half_done" not in table_names(tmp_path / "stigmer.db")
    with sqlite3.connect(tmp_path / "stigmer.db") as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchone() == (current,)
    conn.close()


def test_version_1_file_is_migrated_and_its_records_keep_working(tmp_path: Path) -> None:
    """A file written by the release before request ids and cancel (schema 1) opens, keeps its rows."""
    with sqlite3.connect(tmp_path / "stigmer.db") as conn:
        for statement in schema_module._CREATE_V1:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version (only_row, version) VALUES (1, 1)")
        conn.execute(
            "INSERT INTO agent_executions VALUES ('aex-01JBQ7ZK3M4N5P6Q7R8S9T0V1W', 'echo', 'hi', '{}', 'PENDING',"
            " '[]', '', 1.0, NULL, NULL, 'stigmer/agent-execution/invoke/aex-01JBQ7ZK3M4N5P6Q7R8S9T0V1W', '', 1)"
        )
    conn.close()
    with Store.open(tmp_path) as store:
        old = store.get_agent_execution("aex-01JBQ7ZK3M4N5P6Q7R8S9T0V1W")
        assert (old.request_id, old.cancel_requested_at, old.cancelled_by) == ("", None, "")
        cancelled = store.cancel(AGENT_EXECUTION, old.id)
        assert cancelled.phase is Phase.CANCELLED
    with sqlite3.connect(tmp_path / "stigmer.db") as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchone() == (schema_module.SCHEMA_VERSION,)
    conn.close()


@contextmanager
def read_only_dir(path: Path) -> Iterator[None]:
    """Make ``path`` unwritable even for root (chattr +i), undoing it on every path."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("running as root without chattr: cannot make a directory read-only")
    done = subprocess.run([chattr, "+i", str(path)], capture_output=True, timeout=10, check=False)
    if done.returncode != 0:
        pytest.skip(f"running as root and chattr +i is not supported here: {done.stderr!r}")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], capture_output=True, timeout=10, check=True)


def test_read_only_data_dir_without_database_is_a_store_error(tmp_path: Path) -> None:
    with read_only_dir(tmp_path), pytest.raises(DatabaseError, match="writable") as info:
        Store.open(tmp_path)
    assert str(tmp_path / "stigmer.db") in str(info.value)


def test_read_only_data_dir_with_database_is_a_store_error(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        store.create_agent_execution(agent="a", message="m")
    with read_only_dir(tmp_path), pytest.raises(DatabaseError, match="writable") as info:
        Store.open(tmp_path)
    assert str(tmp_path / "stigmer.db") in str(info.value)


def test_data_dir_that_cannot_be_created_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a dir")
    with pytest.raises(DatabaseError, match="could not create the data dir"):
        Store.open(tmp_path / "file" / "data")


def test_a_write_is_all_or_nothing(sqlite_store: Store) -> None:
    store = sqlite_store
    kept = store.create_agent_execution(agent="a", message="m")
    with pytest.raises(RuntimeError, match="in the middle"), store._db.write("test a partial write") as conn:
        conn.execute("DELETE FROM agent_executions")
        conn.execute("UPDATE schema_version SET version = 99")
        raise RuntimeError("failure in the middle of a transaction")
    assert store.get_agent_execution(kept.id) == kept
    with sqlite3.connect(store.path) as other:
        assert other.execute("SELECT version FROM schema_version").fetchone() == (schema_module.SCHEMA_VERSION,)
    other.close()


def test_disk_full_rolls_back_and_store_recovers(sqlite_store: Store) -> None:
    store = sqlite_store
    first = store.create_agent_execution(agent="a", message="m")
    # SQLite's page limit is the portable way to make the "disk" full for this connection only.
    conn = store._db._conn
    assert conn is not None
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
    with pytest.raises(DatabaseError, match="full") as info:
        store.create_agent_execution(agent="a", message="x" * 200_000)
    assert str(store.path) in str(info.value)
    with pytest.raises(DatabaseError, match="full"):
        store.complete_agent_execution(first.id, replies=[reply("y" * 200_000)])
    assert store.get_agent_execution(first.id) == first
    assert [r.id for r in store.list_agent_executions()[0]] == [first.id]
    conn.execute("PRAGMA max_page_count = 1073741823")
    assert store.complete_agent_execution(first.id, replies=[reply("ok")]).phase is Phase.COMPLETED


# -- agent executions ----------------------------------------------------------------------------


def test_create_and_get_agent_execution(store: Store) -> None:
    record = store.create_agent_execution(agent="helper", message="hi", runtime_env={"A": "1"}, parent_id="p")
    assert is_valid_id("aex", record.id)
    assert record.phase is Phase.PENDING
    assert record.version == 1
    assert record.messages == (Message(role="user", text="hi", at=record.created_at),)
    assert record.workflow_id == f"stigmer/agent-execution/invoke/{record.id}"
    assert (record.error, record.started_at, record.completed_at) == ("", None, None)
    assert (record.runtime_env, record.parent_id) == ({"A": "1"}, "p")
    assert store.get_agent_execution(record.id) == record


def test_create_with_given_id_and_duplicates(store: Store) -> None:
    wanted = "aex-01J9Z3K4T8Q6W2C5N7R1V0XBYD"
    assert store.create_agent_execution(agent="a", message="m", id=wanted).id == wanted
    with pytest.raises(AlreadyExistsError):
        store.create_agent_execution(agent="a", message="m", id=wanted)
    with pytest.raises(ValueError, match="id must be"):
        store.create_agent_execution(agent="a", message="m", id="not-an-id")
    with pytest.raises(TypeError, match="runtime_env"):
        store.create_agent_execution(agent="a", message="m", runtime_env={"n": 1})  # type: ignore[dict-item]


def test_missing_records_raise_not_found(store: Store) -> None:
    missing = "aex-01J9Z3K4T8Q6W2C5N7R1V0XBYD"
    for call in (
        lambda: store.get_agent_execution(missing),
        lambda: store.mark_agent_execution_started(missing),
        lambda: store.complete_agent_execution(missing, replies=[]),
        lambda: store.fail_agent_execution(missing, error="e"),
        lambda: store.get_workflow("nope"),
        lambda: store.get_workflow_execution("wex-01J9Z3K4T8Q6W2C5N7R1V0XBYD"),
    ):
        with pytest.raises(NotFoundError):
            call()


def test_list_newest_first_with_pages(store: Store) -> None:
    ids = [store.create_agent_execution(agent="a", message=str(i)).id for i in range(7)]
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page, token = store.list_agent_executions(page_size=3, page_token=token)
        seen += [r.id for r in page]
        pages += 1
        if not token:
            break
    assert seen == ids[::-1]
    assert pages == 3


def test_exact_multiple_of_page_size_has_no_empty_last_page(store: Store) -> None:
    for i in range(4):
        store.create_agent_execution(agent="a", message=str(i))
    first, token = store.list_agent_executions(page_size=2)
    second, token2 = store.list_agent_executions(page_size=2, page_token=token)
    assert (len(first), len(second), token2) == (2, 2, "")


def test_paging_is_stable_while_records_are_added(store: Store) -> None:
    old = [store.create_agent_execution(agent="a", message=str(i)).id for i in range(4)]
    page, token = store.list_agent_executions(page_size=2)
    store.create_agent_execution(agent="a", message="newer")
    rest, _ = store.list_agent_executions(page_size=10, page_token=token)
    assert [r.id for r in page + rest] == old[::-1]


def test_filter_by_phase_with_pages(store: Store) -> None:
    ids = [store.create_agent_execution(agent="a", message=str(i)).id for i in range(6)]
    for done in ids[::2]:
        store.complete_agent_execution(done, replies=[])
    completed, token = store.list_agent_executions(phase=Phase.COMPLETED, page_size=2)
    more, end = store.list_agent_executions(phase=Phase.COMPLETED, page_size=2, page_token=token)
    assert [r.id for r in completed + more] == ids[::2][::-1]
    assert end == ""
    pending, _ = store.list_agent_executions(phase=Phase.PENDING)
    assert [r.id for r in pending] == ids[1::2][::-1]
    assert store.list_agent_executions(phase=Phase.FAILED) == ([], "")


def test_count_by_phase_counts_each_kind_with_every_phase_present(store: Store) -> None:
    empty = store.count_by_phase()
    assert set(empty) == {AGENT_EXECUTION, WORKFLOW_EXECUTION}
    assert all(counts == {phase.value: 0 for phase in Phase} for counts in empty.values())
    ids = [store.create_agent_execution(agent="a", message=str(i)).id for i in range(4)]
    store.complete_agent_execution(ids[0], replies=[])
    store.fail_agent_execution(ids[1], error="no")
    store.mark_agent_execution_started(ids[2])
    start_wex(store)
    counts = store.count_by_phase()
    assert counts[AGENT_EXECUTION] == {"PENDING": 1, "IN_PROGRESS": 1, "COMPLETED": 1, "FAILED": 1, "CANCELLED": 0}
    assert counts[WORKFLOW_EXECUTION]["PENDING"] == 1 and sum(counts[WORKFLOW_EXECUTION].values()) == 1


def test_page_size_zero_means_default_and_negative_is_refused(store: Store) -> None:
    for i in range(3):
        store.create_agent_execution(agent="a", message=str(i))
    assert len(store.list_agent_executions(page_size=0)[0]) == 3
    with pytest.raises(ValueError, match="page_size"):
        store.list_agent_executions(page_size=-1)


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "token",
    [
        "!!!not base64!!!",
        "abc",
        _b64("v1:aex-bad"),
        _b64("v2:aex-01J9Z3K4T8Q6W2C5N7R1V0XBYD"),
        _b64("v1:wf-01J9Z3K4T8Q6W2C5N7R1V0XBYD"),  # a workflows token
        _b64("v1:aex-01J9Z3K4T8Q6W2C5N7R1V0XBYD' OR 1=1 --"),
        "é",
        "A" * 5000,
    ],
)
def test_malformed_page_token_is_a_value_error(store: Store, token: str) -> None:
    with pytest.raises(ValueError, match="page_token"):
        store.list_agent_executions(page_token=token)


def test_token_of_one_listing_is_refused_by_another(store: Store) -> None:
    make_workflow(store, "one")
    make_workflow(store, "two")
    _, token = store.list_workflows(page_size=1)
    assert token
    with pytest.raises(ValueError, match="page_token"):
        store.list_workflow_executions(page_token=token)


def test_delete_agent_execution(store: Store) -> None:
    record = store.create_agent_execution(agent="a", message="m")
    assert store.delete_agent_execution(record.id) is True
    assert store.delete_agent_execution(record.id) is False
    with pytest.raises(NotFoundError):
        store.get_agent_execution(record.id)


def test_agent_transitions_are_idempotent(store: Store) -> None:
    created = store.create_agent_execution(agent="a", message="m")
    started = store.mark_agent_execution_started(created.id, at=10.0)
    assert (started.phase, started.started_at, started.version) == (Phase.IN_PROGRESS, 10.0, 2)
    assert store.mark_agent_execution_started(created.id, at=11.0) == started

    done = store.complete_agent_execution(created.id, replies=[reply("r1"), reply("r2")], at=20.0)
    assert done.phase is Phase.COMPLETED
    assert [m.text for m in done.messages] == ["m", "r1", "r2"]
    assert (done.started_at, done.completed_at, done.version) == (10.0, 20.0, 3)
    # Repeats and later calls change nothing: replies are appended once, version stays.
    assert store.complete_agent_execution(created.id, replies=[reply("r1"), reply("r2")], at=30.0) == done
    assert store.complete_agent_execution(created.id, replies=[reply("other")]) == done
    assert store.fail_agent_execution(created.id, error="late") == done
    assert store.mark_agent_execution_started(created.id) == done
    assert store.get_agent_execution(created.id) == done


def test_first_terminal_phase_wins(store: Store) -> None:
    created = store.create_agent_execution(agent="a", message="m")
    failed = store.fail_agent_execution(created.id, error="boom", at=5.0)
    assert (failed.phase, failed.error, failed.completed_at, failed.version) == (Phase.FAILED, "boom", 5.0, 2)
    assert store.fail_agent_execution(created.id, error="again") == failed
    assert store.complete_agent_execution(created.id, replies=[reply("r")]) == failed
    assert store.mark_agent_execution_started(created.id) == failed


def test_complete_from_pending_fills_started_at(store: Store) -> None:
    created = store.create_agent_execution(agent="a", message="m")
    done = store.complete_agent_execution(created.id, replies=[], at=42.0)
    assert (done.started_at, done.completed_at, done.version) == (42.0, 42.0, 2)


def test_unfinished_agent_executions_oldest_first(store: Store) -> None:
    ids = [store.create_agent_execution(agent="a", message=str(i)).id for i in range(4)]
    store.mark_agent_execution_started(ids[1])
    store.complete_agent_execution(ids[2], replies=[])
    store.fail_agent_execution(ids[3], error="e")
    assert [r.id for r in store.unfinished_agent_executions()] == ids[:2]


# -- workflows -----------------------------------------------------------------------------------


def test_create_get_list_workflows(store: Store) -> None:
    doc = '{\n  "document": {"name": "x"},  "do": [] }\n'
    wf = store.create_workflow(name="greet", document=doc, valid=False, validation_errors=["e1", "e2"])
    assert is_valid_id("wf", wf.id)
    assert (wf.document, wf.valid, wf.validation_errors, wf.version) == (doc, False, ("e1", "e2"), 1)
    assert store.get_workflow(wf.id) == wf
    assert store.get_workflow("greet") == wf
    with pytest.raises(AlreadyExistsError):
        store.create_workflow(name="greet", document="{}", valid=True)
    other = make_workflow(store, "other")
    page, token = store.list_workflows(page_size=1)
    assert ([w.id for w in page], bool(token)) == ([other.id], True)
    assert store.list_workflows(page_size=1, page_token=token) == ([wf], "")


def test_workflow_named_like_an_id_resolves_by_name(store: Store) -> None:
    looks_like_id = "wf-01J9Z3K4T8Q6W2C5N7R1V0XBYD"
    wf = store.create_workflow(name=looks_like_id, document="{}", valid=True)
    assert store.get_workflow(looks_like_id) == wf


# -- workflow executions -------------------------------------------------------------------------


def test_create_workflow_execution(store: Store) -> None:
    wf = make_workflow(store)
    wex = store.create_workflow_execution(workflow=wf, input='{"x": 1}', task_names_kinds=[("a", "set"), ("b", "call")])
    assert is_valid_id("wex", wex.id)
    assert (wex.workflow_id, wex.workflow_name, wex.input, wex.phase) == (wf.id, wf.name, '{"x": 1}', Phase.PENDING)
    assert [(t.name, t.kind, t.status) for t in wex.tasks] == [
        ("a", "set", TaskStatus.PENDING),
        ("b", "call", TaskStatus.PENDING),
    ]
    assert wex.temporal_workflow_id == f"stigmer/workflow-execution/invoke/{wex.id}"
    assert store.get_workflow_execution(wex.id) == wex


def test_workflow_execution_needs_stored_workflow_and_unique_task_names(store: Store) -> None:
    wf = make_workflow(store)
    ghost = Workflow(
        id="wf-01J9Z3K4T8Q6W2C5N7R1V0XBYD",
        name="ghost",
        document="{}",
        valid=True,
        validation_errors=(),
        created_at=0.0,
        version=1,
    )
    with pytest.raises(NotFoundError):
        store.create_workflow_execution(workflow=ghost, input="{}", task_names_kinds=[])
    with pytest.raises(ValueError, match="repeated"):
        store.create_workflow_execution(workflow=wf, input="{}", task_names_kinds=[("a", "set"), ("a", "set")])
    assert store.list_workflow_executions() == ([], "")


def test_task_status_only_moves_forward(store: Store) -> None:
    wex_id = start_wex(store)
    started = store.mark_workflow_execution_started(wex_id, at=1.0)
    assert (started.phase, started.version) == (Phase.IN_PROGRESS, 2)
    assert store.mark_workflow_execution_started(wex_id, at=2.0) == started

    running = store.set_task_status(wex_id, "a", TaskStatus.RUNNING)
    assert (running.tasks[0].status, running.version) == (TaskStatus.RUNNING, 3)
    assert store.set_task_status(wex_id, "a", TaskStatus.RUNNING) == running
    assert store.set_task_status(wex_id, "a", TaskStatus.PENDING) == running  # never backwards

    done = store.set_task_status(wex_id, "a", TaskStatus.COMPLETED, output='{"v": 1}')
    assert (done.tasks[0].status, done.tasks[0].output, done.version) == (TaskStatus.COMPLETED, '{"v": 1}', 4)
    for status in TaskStatus:  # a finished task never changes again
        assert store.set_task_status(wex_id, "a", status, output="other", error="e") == done

    skipped = store.set_task_status(wex_id, "b", TaskStatus.SKIPPED)  # PENDING straight to terminal
    assert (skipped.tasks[1].status, skipped.version) == (TaskStatus.SKIPPED, 5)
    with pytest.raises(NotFoundError, match="no task"):
        store.set_task_status(wex_id, "zzz", TaskStatus.RUNNING)


def test_workflow_execution_terminal_is_frozen(store: Store) -> None:
    wex_id = start_wex(store)
    done = store.complete_workflow_execution(wex_id, output='{"out": true}', at=9.0)
    assert (done.phase, done.output, done.started_at, done.completed_at, done.version) == (
        Phase.COMPLETED,
        '{"out": true}',
        9.0,
        9.0,
        2,
    )
    assert store.complete_workflow_execution(wex_id, output="different") == done
    assert store.fail_workflow_execution(wex_id, error="late") == done
    assert store.mark_workflow_execution_started(wex_id) == done
    assert store.set_task_status(wex_id, "a", TaskStatus.COMPLETED) == done


def test_workflow_execution_fail_wins_over_complete(store: Store) -> None:
    wex_id = start_wex(store)
    failed = store.fail_workflow_execution(wex_id, error="task a failed", at=3.0)
    assert (failed.phase, failed.error, failed.version) == (Phase.FAILED, "task a failed", 2)
    assert store.complete_workflow_execution(wex_id, output="{}") == failed
    assert store.fail_workflow_execution(wex_id, error="other") == failed


def test_workflow_execution_list_delete_unfinished(store: Store) -> None:
    wf = make_workflow(store)
    ids = [store.create_workflow_execution(workflow=wf, input="{}", task_names_kinds=[]).id for _ in range(3)]
    store.complete_workflow_execution(ids[0], output="{}")
    assert [w.id for w in store.unfinished_workflow_executions()] == ids[1:]
    assert [w.id for w in store.list_workflow_executions(phase=Phase.PENDING)[0]] == ids[:0:-1]
    page, token = store.list_workflow_executions(page_size=2)
    assert [w.id for w in page] == ids[:0:-1]
    assert [w.id for w in store.list_workflow_executions(page_token=token)[0]] == ids[:1]
    assert store.delete_workflow_execution(ids[1]) is True
    assert store.delete_workflow_execution(ids[1]) is False
    assert [w.id for w in store.unfinished_workflow_executions()] == ids[2:]


# -- text fidelity -------------------------------------------------------------------------------


@pytest.mark.parametrize("text", TRICKY_TEXTS, ids=range(len(TRICKY_TEXTS)))
def test_text_round_trips_exactly_everywhere(store: Store, text: str) -> None:
    aex = store.create_agent_execution(agent=text, message=text, runtime_env={text: text}, parent_id=text)
    aex = store.complete_agent_execution(aex.id, replies=[Message(role=text, text=text, at=1.5)])
    again = store.get_agent_execution(aex.id)
    assert (again.agent, again.message, again.parent_id, again.runtime_env) == (text, text, text, {text: text})
    assert again.messages[1] == Message(role=text, text=text, at=1.5)
    assert store.fail_agent_execution(store.create_agent_execution(agent="a", message="m").id, error=text).error == text

    wf = store.create_workflow(name=text, document=text, valid=False, validation_errors=[text])
    assert store.get_workflow(text) == wf
    assert (wf.name, wf.document, wf.validation_errors) == (text, text, (text,))
    wex = store.create_workflow_execution(workflow=wf, input=text, task_names_kinds=[(text, text)])
    store.set_task_status(wex.id, text, TaskStatus.FAILED, output=text, error=text)
    done = store.complete_workflow_execution(wex.id, output=text)
    assert (done.input, done.output, done.tasks[0].output, done.tasks[0].error) == (text, text, text, text)
    assert store.get_workflow_execution(wex.id) == done
    if isinstance(store.path, Path):  # SQLite: the file is still a SQLite database
        assert {"agent_executions", "workflows", "workflow_executions"} <= table_names(store.path)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300))
def test_any_text_round_trips(store: Store, text: str) -> None:
    # Lone surrogates (category Cs) are not valid Unicode and cannot be encoded for SQLite.
    aex = store.create_agent_execution(agent="a", message=text, runtime_env={"k": text})
    got = store.get_agent_execution(aex.id)
    assert (got.message, got.runtime_env["k"], got.messages[0].text) == (text, text, text)


# -- listeners -----------------------------------------------------------------------------------


def test_listener_called_once_per_change_and_never_for_no_ops(store: Store) -> None:
    events: list[tuple[str, str]] = []
    unsubscribe = store.add_listener(lambda kind, id: events.append((kind, id)))
    aex = store.create_agent_execution(agent="a", message="m")
    for _ in range(2):
        store.mark_agent_execution_started(aex.id)
        store.complete_agent_execution(aex.id, replies=[reply("r")])
        store.fail_agent_execution(aex.id, error="e")
    assert events == [("agent_execution", aex.id)] * 3
    failed = store.create_agent_execution(agent="a", message="m")
    for _ in range(2):
        store.fail_agent_execution(failed.id, error="e")
        store.mark_agent_execution_started(failed.id)
        store.complete_agent_execution(failed.id, replies=[])
    assert events[3:] == [("agent_execution", failed.id)] * 2

    events.clear()
    wex_id = start_wex(store)
    wf_id = store.get_workflow_execution(wex_id).workflow_id
    for _ in range(2):
        store.mark_workflow_execution_started(wex_id)
        store.set_task_status(wex_id, "a", TaskStatus.RUNNING)
        store.set_task_status(wex_id, "a", TaskStatus.COMPLETED)
        store.set_task_status(wex_id, "a", TaskStatus.PENDING)
        store.complete_workflow_execution(wex_id, output="{}")
        store.fail_workflow_execution(wex_id, error="e")
    assert store.delete_workflow_execution(wex_id) is True
    assert store.delete_workflow_execution(wex_id) is False
    assert events == [("workflow", wf_id)] + [("workflow_execution", wex_id)] * 6

    unsubscribe()
    unsubscribe()
    store.create_agent_execution(agent="a", message="m")
    assert len(events) == 7


def test_failing_listener_is_logged_and_does_not_break_the_write(store: Store) -> None:
    logged: list[str] = []
    sink = logger.add(lambda message: logged.append(str(message)), level="ERROR", format="{message}")
    seen: list[str] = []

    def broken(kind: str, id: str) -> None:
        raise RuntimeError("listener bug")

    try:
        store.add_listener(broken)
        store.add_listener(lambda kind, id: seen.append(id))
        aex = store.create_agent_execution(agent="a", message="m")
    finally:
        logger.remove(sink)
    assert store.get_agent_execution(aex.id).version == 1
    assert seen == [aex.id]
    assert len(logged) == 1 and "listener" in logged[0] and aex.id in logged[0]


def test_listener_runs_after_commit_and_outside_the_lock(store: Store) -> None:
    observed: list[object] = []

    def listener(kind: str, id: str) -> None:
        # Another thread must be able to read right now: the write is committed and unlocked.
        reader = threading.Thread(target=lambda: observed.append(store.get_agent_execution(id).version))
        reader.start()
        reader.join(timeout=5)
        observed.append("blocked" if reader.is_alive() else "done")

    store.add_listener(listener)
    aex = store.create_agent_execution(agent="a", message="m")
    store.mark_agent_execution_started(aex.id)
    assert observed == [1, "done", 2, "done"]


# -- concurrency ---------------------------------------------------------------------------------


def run_threads(count: int, target: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def guarded(n: int) -> None:
        try:
            target(n)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    assert errors == []


def test_concurrent_writers(store: Store) -> None:
    events: list[str] = []
    events_lock = threading.Lock()

    def count(kind: str, id: str) -> None:
        with events_lock:
            events.append(id)

    store.add_listener(count)

    def work(n: int) -> None:
        for i in range(25):
            aex = store.create_agent_execution(agent=f"t{n}", message=str(i))
            store.mark_agent_execution_started(aex.id)
            store.complete_agent_execution(aex.id, replies=[reply(f"{n}-{i}")])

    run_threads(4, work)
    records, token = store.list_agent_executions(page_size=1000)
    assert (len(records), token) == (100, "")
    assert all(r.phase is Phase.COMPLETED and r.version == 3 and len(r.messages) == 2 for r in records)
    assert len(events) == 300


def test_concurrent_task_updates_lose_nothing(store: Store) -> None:
    names = [f"t{i}" for i in range(20)]
    wex_id = start_wex(store, names)

    def work(n: int) -> None:
        for name in names[n::4]:
            store.set_task_status(wex_id, name, TaskStatus.RUNNING)
            store.set_task_status(wex_id, name, TaskStatus.COMPLETED, output=f'"{name}"')

    run_threads(4, work)
    final = store.get_workflow_execution(wex_id)
    assert [(t.status, t.output) for t in final.tasks] == [(TaskStatus.COMPLETED, f'"{n}"') for n in names]
    assert final.version == 1 + 2 * len(names)


def test_two_stores_on_one_file_see_each_other(tmp_path: Path) -> None:
    with Store.open(tmp_path) as writer, Store.open(tmp_path) as reader:
        aex = writer.create_agent_execution(agent="a", message="m")
        assert reader.get_agent_execution(aex.id) == aex
        reader.complete_agent_execution(aex.id, replies=[])
        assert writer.complete_agent_execution(aex.id, replies=[reply("late")]).version == 2
