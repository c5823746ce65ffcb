"""The PostgreSQL store against a real cluster: what only a shared database has.

Two Store objects on one database stand for two processes (each has its own pool, publisher and
listener, exactly as two servers would). The contract every backend keeps runs in tests/unit
(the ``store`` fixture of tests/conftest.py runs it on both).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from stigmer.errors import ConfigError, DatabaseError, DatabaseUnavailableError
from stigmer.store import AGENT_EXECUTION, Phase, RequestKey, Store, body_digest
from stigmer.testing.eventually import wait_until
from stigmer.testing.postgres import PostgresDatabase, PostgresServer

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]


def connect(url: str, tmp_path: Path) -> Store:
    return Store.connect(url, data_dir=tmp_path / "data")


@pytest.fixture
def two(postgres_database: PostgresDatabase, tmp_path: Path) -> Iterator[tuple[Store, Store]]:
    first = connect(postgres_database.url, tmp_path)
    second = connect(postgres_database.url, tmp_path)
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def test_exactly_one_terminal_transition_wins_across_processes(two: tuple[Store, Store]) -> None:
    a, b = two
    ids = [a.create_agent_execution(agent="echo", message=str(i)).id for i in range(30)]
    wins: Counter[str] = Counter()
    lock = threading.Lock()

    def race(store: Store, how: str) -> None:
        for id in ids:
            if how == "complete":
                record = store.complete_agent_execution(id, replies=[])
            elif how == "fail":
                record = store.fail_agent_execution(id, error="x")
            else:
                record = store.cancel(AGENT_EXECUTION, id)
            with lock:
                wins[f"{id}:{record.phase.value}:{record.version}"] += 1

    threads = [
        threading.Thread(target=race, args=(store, how))
        for store, how in ((a, "complete"), (b, "fail"), (a, "cancel"), (b, "complete"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for id in ids:
        final = a.get_agent_execution(id)
        assert final.phase.terminal and final.version == 2  # one transition, never two
        assert b.get_agent_execution(id) == final


def test_a_change_made_by_one_process_reaches_the_others_listeners(two: tuple[Store, Store]) -> None:
    a, b = two
    heard: list[tuple[str, str]] = []
    b.add_listener(lambda kind, id: heard.append((kind, id)))
    made = a.create_agent_execution(agent="echo", message="m")
    a.mark_agent_execution_started(made.id)
    wait_until(lambda: heard.count((AGENT_EXECUTION, made.id)) >= 2, timeout=10, what="both changes announced")
    heard_by_a: list[str] = []
    a.add_listener(lambda kind, id: heard_by_a.append(id))
    b.complete_agent_execution(made.id, replies=[])
    wait_until(lambda: made.id in heard_by_a, timeout=10, what="the completion announced back")
    assert heard.count((AGENT_EXECUTION, made.id)) == 3  # its own change once, not twice


def test_the_same_request_id_from_two_processes_at_once_makes_one_record(two: tuple[Store, Store]) -> None:
    a, b = two
    for _ in range(10):
        key = RequestKey(str(uuid.uuid4()), body_digest("same"))
        results: list[tuple[str, bool]] = []

        def admit(store: Store, key: RequestKey = key, results: list[tuple[str, bool]] = results) -> None:
            record, created = store.admit_agent_execution(agent="echo", message="m", request=key)
            results.append((record.id, created))

        threads = [threading.Thread(target=admit, args=(s,)) for s in (a, b, a, b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len({id for id, _ in results}) == 1 and [c for _, c in results].count(True) == 1, results


def test_two_servers_starting_together_create_one_schema(postgres_database: PostgresDatabase, tmp_path: Path) -> None:
    opened: list[Store] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            opened.append(connect(postgres_database.url, tmp_path))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert errors == [] and len(opened) == 4
        made = opened[0].create_agent_execution(agent="echo", message="m")
        assert opened[3].get_agent_execution(made.id) == made
    finally:
        for store in opened:
            store.close()


def test_a_newer_schema_or_a_foreign_database_is_refused_untouched(
    stigmer_postgres: PostgresServer, tmp_path: Path
) -> None:
    newer = stigmer_postgres.create_database()
    connect(newer.url, tmp_path).close()
    with newer.connect() as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(DatabaseError, match=r"newer stigmer \(schema version 99"):
        connect(newer.url, tmp_path)
    foreign = stigmer_postgres.create_database()
    with foreign.connect() as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(DatabaseError, match=r"no stigmer schema \(invoices"):
        connect(foreign.url, tmp_path)
    with foreign.connect() as conn:
        assert conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
        ).fetchone() == (0,)


def test_bad_settings_are_one_line_errors(stigmer_postgres: PostgresServer, tmp_path: Path) -> None:
    role = f"reader_{uuid.uuid4().hex[:8]}"
    stigmer_postgres.create_role(role, password="secret-pw", read_only=True)
    owner = f"owner_{uuid.uuid4().hex[:8]}"
    stigmer_postgres.create_role(owner, password="right-pw")
    database = stigmer_postgres.create_database(owner=owner)
    cases = {
        "postgresql://stigmer@127.0.0.1:notaport/x": (ConfigError, "malformed"),
        "mysql://root@127.0.0.1/stigmer": (ConfigError, "unknown scheme 'mysql'"),
        "postgresql:///stigmer": (ConfigError, "name the PostgreSQL host"),
        database.url_for(user=owner, password="wrong-pw"): (DatabaseError, "refused the credentials"),
        stigmer_postgres.url_for(f"missing_{uuid.uuid4().hex[:6]}"): (DatabaseError, "does not exist"),
        database.url_for(user=role, password="secret-pw"): (DatabaseError, "may not change"),
    }
    for url, (kind, text) in cases.items():
        with pytest.raises(kind, match=text) as caught:
            connect(url, tmp_path)
        message = str(caught.value)
        assert "\n" not in message and "wrong-pw" not in message and "secret-pw" not in message, message
    connect(database.url_for(user=owner, password="right-pw"), tmp_path).close()  # the owner may


def test_postgresql_down_at_start_then_up_then_killed_then_back(owned_postgres: PostgresServer, tmp_path: Path) -> None:
    owned_postgres.stop()
    started = time.monotonic()
    store = connect(owned_postgres.url, tmp_path)
    try:
        assert time.monotonic() - started < 10 and not store.available
        changes: list[bool] = []
        store.on_availability(changes.append)
        refused_at = time.monotonic()
        with pytest.raises(DatabaseUnavailableError, match="database unavailable"):
            store.list_agent_executions()
        assert time.monotonic() - refused_at < 0.5  # fast, not a pool timeout

        owned_postgres.restart()
        wait_until(lambda: store.available, timeout=20, what="the store sees PostgreSQL")
        kept = store.create_agent_execution(agent="echo", message="acknowledged")

        owned_postgres.kill()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the first call after the kill meets the broken connection
            try:
                store.get_agent_execution(kept.id)
            except DatabaseUnavailableError:
                break
        assert not store.available
        owned_postgres.restart()
        wait_until(lambda: store.available, timeout=20, what="the store reconnected by itself")
        assert store.get_agent_execution(kept.id).message == "acknowledged"  # nothing lost
        store.complete_agent_execution(kept.id, replies=[])
        assert store.get_agent_execution(kept.id).phase is Phase.COMPLETED
        assert changes[:1] == [True] and False in changes and changes[-1] is True
    finally:
        store.close()


def test_one_lease_holder_at_a_time_and_a_dead_holder_hands_over(two: tuple[Store, Store]) -> None:
    a, b = two
    first, second = a.lease(42), b.lease(42)
    try:
        assert first.acquire() and not second.acquire()
        assert first.acquire()  # still held: its connection lives
        first.release()
        assert second.acquire() and not first.acquire()
        # The holder's connection dies (its process was killed): the lock goes with it.
        with a._db.write("kill the lease holder's backend") as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND objid = ?", (42,)
            )
        wait_until(first.acquire, timeout=10, what="the lease taken over")
        assert not second.acquire()
    finally:
        first.release()
        second.release()
