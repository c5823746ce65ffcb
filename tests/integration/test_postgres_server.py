"""PostgresServer against a real PostgreSQL cluster: the ground the PostgreSQL store (issue 15) will
stand on -- start, connect, SIGKILL (nothing left, by PID), restart on the same port with the data,
clean stop and cleanup, a fresh database per test, roles for bad-input tests, clusters side by side."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from stigmer.testing.eventually import wait_until
from stigmer.testing.postgres import DATABASE, SUPERUSER, PostgresDatabase, PostgresExitedError, PostgresServer

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(60)]

FAIL_FAST = 1.0  # seconds: a refused connect or a dead backend answers at once, not after a timeout


def gone(pids: list[int]) -> list[int]:
    """The PIDs that still run (a zombie holds nothing: counted as gone)."""
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in "ZX":
            alive.append(pid)
    return alive


def shm_ids() -> set[int]:
    lines = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    return {int(line.split()[1]) for line in lines}


def test_kill_leaves_nothing_and_restart_keeps_committed_rows(owned_postgres: PostgresServer) -> None:
    server = owned_postgres
    assert server.url == f"postgresql://{SUPERUSER}@127.0.0.1:{server.port}/{DATABASE}"
    with psycopg.connect(server.url, connect_timeout=2, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (note text)")
        conn.execute("INSERT INTO kept VALUES ('before the kill')")
    idle = server.connect()  # an idle backend ...
    busy = server.connect()  # ... and one in the middle of a query
    busy_error: list[BaseException] = []

    def sleep_in_the_backend() -> None:
        try:
            busy.execute("SELECT pg_sleep(30)")
        except psycopg.Error as exc:
            busy_error.append(exc)

    thread = threading.Thread(target=sleep_in_the_backend, daemon=True)
    thread.start()
    wait_until(
        lambda: len(server.execute("SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'")) == 1,
        timeout=10,
        what="the sleeping query to show up",
    )
    port, postmaster, before = server.port, server.pid, server.processes()
    assert postmaster in before and len(before) >= 4  # postmaster, checkpointer, ..., two backends

    server.kill()

    assert not server.is_running and gone(before) == [] and server.processes() == []
    thread.join(timeout=FAIL_FAST)
    assert not thread.is_alive() and busy_error, "the running query did not fail when its backend died"
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError):
        idle.execute("SELECT 1")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server.url, connect_timeout=2)
    assert time.monotonic() - started < FAIL_FAST
    idle.close()
    busy.close()

    server.restart()

    assert (server.port, server.is_running) == (port, True) and server.pid != postmaster
    assert server.execute("SELECT note FROM kept") == [("before the kill",)]


def test_stop_restart_close_leave_no_process_no_temp_dir_no_shared_memory() -> None:
    server = PostgresServer()
    try:
        server.start()
        root, first = server.root, server.processes()
        server.execute("CREATE TABLE t (x int)")
        server.execute("INSERT INTO t VALUES (1)")

        server.restart()  # fast shutdown, then start on the same port and data dir
        assert gone(first) == [] and server.execute("SELECT x FROM t") == [(1,)]

        server.stop()
        assert not server.is_running and server.processes() == []
        assert not (server.data_dir / "postmaster.pid").exists()  # a clean shutdown

        server.start()
        segment = int((server.data_dir / "postmaster.pid").read_text().splitlines()[6].split()[1])
        last = server.processes()
        server.kill()  # a kill leaves the SysV interlock segment behind ...
        assert segment in shm_ids()
    finally:
        server.close()
    assert gone(last) == [] and not root.exists()
    assert segment not in shm_ids()  # ... close() removes it
    server.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        server.start()


def test_a_taken_port_is_a_clear_error_and_cleans_up() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = PostgresServer(port=taken.getsockname()[1])
        with pytest.raises(PostgresExitedError, match="exited with code"), server:
            pass
    assert server.processes() == [] and not server.root.exists()


@pytest.mark.parametrize("run", [1, 2])
def test_each_test_gets_a_fresh_empty_database(postgres_database: PostgresDatabase, run: int) -> None:
    assert postgres_database.name.startswith("test_")
    assert postgres_database.url.endswith(f"/{postgres_database.name}")
    with postgres_database.connect() as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'").fetchall()
        assert tables == []  # the other run's table is in the other run's database
        conn.execute("CREATE TABLE t (run int)")
        conn.execute("INSERT INTO t VALUES (%s)", (run,))


def test_databases_are_isolated_and_dropped(
    stigmer_postgres: PostgresServer, postgres_database: PostgresDatabase
) -> None:
    with postgres_database.connect() as conn:
        conn.execute("CREATE TABLE mine (x int)")
    other = stigmer_postgres.create_database()
    still_open = other.connect()
    try:
        with other.connect() as conn, pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM mine")
    finally:
        other.drop()  # WITH (FORCE): the open connection does not keep it alive
        still_open.close()
    names = {row[0] for row in stigmer_postgres.execute("SELECT datname FROM pg_database")}
    assert postgres_database.name in names and other.name not in names


def test_roles_for_bad_input_tests(stigmer_postgres: PostgresServer, postgres_database: PostgresDatabase) -> None:
    suffix = postgres_database.name.removeprefix("test_")[:12]
    with postgres_database.connect() as conn:
        conn.execute("CREATE TABLE t (x int)")
        conn.execute("INSERT INTO t VALUES (1)")
    reader = stigmer_postgres.create_role(f"reader_{suffix}", password="r-secret", read_only=True)
    writer = stigmer_postgres.create_role(f"writer_{suffix}", password="p@ss:w/rd")  # URL-quoted
    nopass = stigmer_postgres.create_role(f"nopass_{suffix}")

    with psycopg.connect(postgres_database.url_for(user=reader, password="r-secret"), connect_timeout=2) as conn:
        assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO t VALUES (2)")
    with psycopg.connect(postgres_database.url_for(user=writer, password="p@ss:w/rd"), connect_timeout=2) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (writer,)
    for url in (
        postgres_database.url_for(user=writer, password="wrong"),
        postgres_database.url_for(user=nopass),
        postgres_database.url_for(user=f"nobody_{suffix}", password="x"),
    ):
        with pytest.raises(psycopg.OperationalError, match=r"authentication failed|no password supplied"):
            psycopg.connect(url, connect_timeout=2)
    # The superuser is trusted on loopback: with or without its password.
    with psycopg.connect(stigmer_postgres.password_url, connect_timeout=2) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (SUPERUSER,)


def test_two_clusters_side_by_side(stigmer_postgres: PostgresServer, owned_postgres: PostgresServer) -> None:
    assert stigmer_postgres.port != owned_postgres.port and stigmer_postgres.root != owned_postgres.root
    database = owned_postgres.create_database()
    with database.connect() as conn:
        conn.execute("CREATE TABLE only_here (x int)")
    assert database.name not in {row[0] for row in stigmer_postgres.execute("SELECT datname FROM pg_database")}

    owned_postgres.kill()

    assert owned_postgres.processes() == [] and stigmer_postgres.is_running
    assert stigmer_postgres.pid in stigmer_postgres.processes()
    assert stigmer_postgres.execute("SELECT 1") == [(1,)]


def test_the_plugin_does_not_load_postgres_or_psycopg() -> None:
    """The plugin loads in every pytest run: the cluster's module and psycopg only come with a fixture."""
    code = (
        "import sys, stigmer.testing.plugin; print(sorted({'psycopg', 'stigmer.testing.postgres'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr
