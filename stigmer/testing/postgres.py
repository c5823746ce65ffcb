"""A real, throw-away PostgreSQL cluster as a process tests can kill and restart (groundwork, issue 15).

One ``PostgresServer`` is one cluster in a temp dir of its own (``data/``, the unix socket dir
``sock/``, ``postgres.log``), initialised once per instance (``initdb``, about 0.5 s) and served by
``postgres`` on a free loopback port, listening on 127.0.0.1 only. As root, initdb and postgres
run as the ``postgres`` OS user (they refuse root), which owns the temp dir; otherwise as the
current user. Both are spawned directly (``Popen(user=...)``, not through ``runuser``, whose PID
would be runuser's), so the ``Popen`` PID *is* the postmaster's.

**Kill.** The postmaster's children (backends, checkpointer, ...) call ``setsid()``: a signal to
the postmaster's process group does not reach them, and an orphaned backend lives on until it
notices its parent is gone. ``kill()`` therefore freezes the postmaster (SIGSTOP, so it forks
nothing new), collects its processes -- its descendants, and every process whose working
directory is the data dir (postgres chdirs there; this finds orphans too) -- SIGKILLs them all
and waits until every one of those PIDs (checked with its start time) is gone. The cluster's
SysV interlock segment, which only a clean shutdown removes, is removed when the cluster is
closed; dynamic shared memory lives in the data dir (``dynamic_shared_memory_type=mmap``).

**Auth** (``pg_hba.conf``): the superuser (``stigmer``) is trusted on loopback and on the socket;
every other role logs in over TCP with its password (scram-sha-256), so a role without one cannot.

Settings are for tests (``FAST_SETTINGS``): fsync and full_page_writes off, which survives a
process kill (committed rows are in the OS page cache) but not a machine crash. synchronous_commit
stays on: off, a commit returns while its WAL is still in shared memory, and a kill loses it
(measured: rows committed just before a SIGKILL were gone after the restart); with fsync off it
costs a write(), not a flush.

Leftovers are closed (killed, temp dir removed) at interpreter exit. Linux only for ``kill()``'s
process search (``/proc``).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any, LiteralString
from urllib.parse import quote

import psycopg
from psycopg import sql

from stigmer.testing.eventually import wait_until
from stigmer.testing.ports import free_port, is_port_free

HOST = "127.0.0.1"
DATABASE = "stigmer"
SUPERUSER = "stigmer"
#: The OS user that runs the cluster when this process is root (Debian's package creates it).
OS_USER = "postgres"
FAST_SETTINGS = {
    "fsync": "off",
    "full_page_writes": "off",
    "shared_buffers": "16MB",
    "max_connections": "100",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "dynamic_shared_memory_type": "mmap",  # in the data dir: nothing left in /dev/shm after a kill
}
_POLL_INTERVAL = 0.05
_CONNECT_TIMEOUT = 2  # libpq's smallest (it rounds 1 up to 2)
_STATEMENT_TIMEOUT_MS = 15_000
_HBA = "local all all trust\nhost all {superuser} 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n"
_IPC_RMID = 0


class PostgresNotFoundError(RuntimeError):
    """PostgreSQL's server binaries (initdb, postgres) are not installed."""


class PostgresExitedError(RuntimeError):
    """initdb failed, or the postmaster exited while we waited for it."""


@cache
def find_postgres_bindir() -> Path:
    """The dir holding ``initdb`` and ``postgres``: ``$STIGMER_PG_BINDIR``, ``pg_config --bindir``,
    the newest ``/usr/lib/postgresql/*/bin`` (Debian), else wherever ``initdb`` is on PATH."""
    candidates = [Path(p) for p in [os.environ.get("STIGMER_PG_BINDIR", "")] if p]
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            candidates.append(Path(done.stdout.strip()))
    debian = Path("/usr/lib/postgresql").glob("*/bin")
    candidates += sorted(debian, key=lambda p: [int(x) for x in p.parent.name.split(".") if x.isdigit()], reverse=True)
    if (initdb := shutil.which("initdb")) is not None:
        candidates.append(Path(initdb).parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    raise PostgresNotFoundError(
        "PostgreSQL's initdb and postgres were not found (pg_config --bindir, /usr/lib/postgresql/*/bin, PATH); "
        "install the server (Debian: apt-get install postgresql) or set STIGMER_PG_BINDIR"
    )


# -- processes, by PID (Linux /proc) ----------------------------------------------------------

_Proc = tuple[int, int]  # (pid, start time in clock ticks): a PID alone may be reused


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, start time) of a process, None when there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[19])


def _alive(proc: _Proc) -> bool:
    stat = _stat(proc[0])
    return stat is not None and stat[2] == proc[1] and stat[0] not in "ZX"  # a zombie holds nothing


def _cluster_processes(postmaster: int | None, data_dir: Path) -> set[_Proc]:
    """The postmaster's descendants and every process working in the data dir, with itself."""
    children: dict[int, list[int]] = {}
    found: set[_Proc] = set()
    target = str(data_dir)
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit() or (stat := _stat(int(entry.name))) is None or stat[0] in "ZX":
                continue
            pid = int(entry.name)
            children.setdefault(stat[1], []).append(pid)
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/cwd") == target:
                    found.add((pid, stat[2]))
    todo = [postmaster] if postmaster is not None else []
    while todo:
        pid = todo.pop()
        if (stat := _stat(pid)) is not None:
            found.add((pid, stat[2]))
            todo += children.get(pid, [])
    return found


def _remove_shm(shmid: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).shmctl(shmid, _IPC_RMID, None)


# Every cluster this interpreter made and has not closed; closed (killed, temp dir removed) at
# interpreter exit, the last resort for a crashed test run.
_LIVE: dict[int, PostgresServer] = {}
_LIVE_LOCK = threading.Lock()


def _close_leftovers() -> None:
    with _LIVE_LOCK:
        servers = list(_LIVE.values())
    for server in servers:
        with contextlib.suppress(Exception):
            server.close()


atexit.register(_close_leftovers)


@dataclass(frozen=True)
class PostgresDatabase:
    """One database on a ``PostgresServer`` (``create_database()``)."""

    server: PostgresServer
    name: str

    @property
    def url(self) -> str:
        return self.server.url_for(self.name)

    def url_for(self, *, user: str | None = None, password: str | None = None) -> str:
        return self.server.url_for(self.name, user=user, password=password)

    def connect(self, **kwargs: Any) -> psycopg.Connection[tuple[Any, ...]]:
        return self.server.connect(self.name, **kwargs)

    def drop(self) -> None:
        self.server.drop_database(self.name)


class PostgresServer:
    """One throw-away PostgreSQL cluster on 127.0.0.1, restartable on the same port and data dir.

    ``start()`` initialises the cluster on its first call (superuser ``stigmer``, database
    ``stigmer``), spawns the postmaster and, unless ``wait=False``, waits until it answers.
    ``close()`` (also ``__exit__``) kills it and removes the temp dir; an instance is single-use.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        base_dir: str | os.PathLike[str] | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self._bindir = find_postgres_bindir()
        self._port = port if port is not None else free_port()
        self._base_dir = base_dir
        self._settings = {**FAST_SETTINGS, **(settings or {})}
        #: The superuser's password: trusted on loopback, so any password (or none) is accepted.
        self.password = secrets.token_urlsafe(16)
        self._root: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._last_pid: int | None = None
        self._bootstrapped = False
        self._closed = False

    # -- facts -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """``postgresql://stigmer@127.0.0.1:PORT/stigmer``: the superuser, no password."""
        return self.url_for()

    @property
    def password_url(self) -> str:
        """``url`` with the superuser's password in it."""
        return self.url_for(password=self.password)

    def url_for(self, dbname: str = DATABASE, *, user: str | None = None, password: str | None = None) -> str:
        auth = quote(user or SUPERUSER, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        return f"postgresql://{auth}@{HOST}:{self._port}/{quote(dbname, safe='')}"

    @property
    def root(self) -> Path:
        """The temp dir (data dir, socket dir, log); exists from the first start() until close()."""
        if self._root is None:
            raise RuntimeError("the cluster was never started")
        return self._root

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    @property
    def pid(self) -> int | None:
        """The postmaster's PID, or the last one's after a kill; None if never started."""
        return self._last_pid

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def processes(self) -> list[int]:
        """PIDs of the cluster's live processes: the postmaster, its children and any orphan of theirs."""
        if self._root is None:
            return []
        return sorted(pid for pid, _ in _cluster_processes(self._pid_if_running(), self.data_dir.resolve()))

    def command(self) -> list[str]:
        cmd = [str(self._bindir / "postgres"), "-D", str(self.data_dir), "-p", str(self._port)]
        cmd += ["-k", str(self.root / "sock"), "-c", f"listen_addresses={HOST}"]
        for name, value in self._settings.items():
            cmd += ["-c", f"{name}={value}"]
        return cmd

    def log_tail(self, *, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except (OSError, RuntimeError):
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self, *, wait: bool = True, timeout: float = 30.0) -> PostgresServer:
        if self._closed:
            raise RuntimeError("this PostgresServer was closed; make a new one")
        if self.is_running:
            raise RuntimeError(f"postgres at {HOST}:{self._port} is already running (pid {self.pid})")
        if self._root is None:
            self._initdb(timeout=timeout)
        with open(self.log_path, "ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} spawning: {' '.join(self.command())}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, **self._spawn_args()
            )
        self._last_pid = self._proc.pid
        if wait:
            try:
                self.wait_ready(timeout=timeout)
            except BaseException:
                self.kill()
                raise
        return self

    def wait_ready(self, *, timeout: float = 30.0) -> None:
        """Block until the cluster answers a query on its port (and, the first time, create the
        ``stigmer`` database); raises TimeoutError or PostgresExitedError."""
        try:
            wait_until(self._probe, timeout=timeout, interval=_POLL_INTERVAL, what=f"postgres at {self.url} to answer")
        except AssertionError as exc:
            raise TimeoutError(f"{exc}\nlog {self.log_path}:\n{self.log_tail()}") from None
        if not self._bootstrapped:
            self.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)), dbname="postgres")
            self._bootstrapped = True

    def kill(self, *, timeout: float = 10.0) -> None:
        """SIGKILL the postmaster and every process of the cluster (see the module's docstring), and
        wait until all of them are gone. Safe to call when not running."""
        proc = self._proc
        if self._root is None:
            return
        postmaster = self._pid_if_running()
        if postmaster is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(postmaster, signal.SIGSTOP)  # frozen: it forks nothing while we look
        victims = _cluster_processes(postmaster, self.data_dir.resolve())
        for pid, _ in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if proc is not None:
            proc.wait(timeout=timeout)
        self._proc = None
        wait_until(
            lambda: not [p for p in victims if _alive(p)],
            timeout=timeout,
            interval=0.01,
            what=f"the killed postgres processes {sorted(p for p, _ in victims)} to be gone",
        )

    def stop(self, *, timeout: float = 10.0) -> None:
        """Fast shutdown (SIGINT: roll back, checkpoint, exit); kill() if it takes over `timeout`."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=timeout)
        self.kill(timeout=timeout)  # nothing left after a clean stop; makes sure of it either way

    def restart(self, *, wait: bool = True, timeout: float = 30.0) -> PostgresServer:
        """Stop (fast) if running, then start again on the same port and data dir: the data stays.
        To simulate a crash, kill() first: restart() then only starts (with crash recovery)."""
        self.stop(timeout=min(timeout, 10.0))
        wait_until(
            lambda: is_port_free(self._port),
            timeout=timeout,
            interval=_POLL_INTERVAL,
            what=f"port {self._port} of the stopped postgres to be free",
        )
        return self.start(wait=wait, timeout=timeout)

    def close(self) -> None:
        """Kill the cluster and remove its temp dir. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._root is not None:
                self.kill()
                shmid = self._shmid()
                if shmid is not None:
                    _remove_shm(shmid)  # a clean shutdown removes it, a kill leaves it behind
        finally:
            if self._root is not None:
                shutil.rmtree(self._root, ignore_errors=True)
            with _LIVE_LOCK:
                _LIVE.pop(id(self), None)

    # -- SQL helpers (as the superuser) ------------------------------------------------------

    def connect(
        self,
        dbname: str = DATABASE,
        *,
        user: str | None = None,
        password: str | None = None,
        autocommit: bool = True,
        statement_timeout: float = _STATEMENT_TIMEOUT_MS / 1000,
    ) -> psycopg.Connection[tuple[Any, ...]]:
        """A connection over TCP (connect_timeout 2 s, statement_timeout 15 s by default)."""
        return psycopg.connect(
            host=HOST,
            port=self._port,
            dbname=dbname,
            user=user or SUPERUSER,
            password=password,
            connect_timeout=_CONNECT_TIMEOUT,
            sslmode="disable",
            gssencmode="disable",
            options=f"-c statement_timeout={int(statement_timeout * 1000)}",
            autocommit=autocommit,
        )

    def execute(
        self, query: LiteralString | sql.SQL | sql.Composed, params: Any = None, *, dbname: str = DATABASE
    ) -> list[tuple[Any, ...]]:
        """Run one statement as the superuser (autocommit); its rows, if it returns any."""
        with self.connect(dbname) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []

    def create_database(self, name: str | None = None, *, owner: str | None = None) -> PostgresDatabase:
        """A new empty database (default name ``test_<uuid>``), owned by `owner` or the superuser."""
        name = name or f"test_{uuid.uuid4().hex}"
        statement = sql.SQL("CREATE DATABASE {} OWNER {}").format(
            sql.Identifier(name), sql.Identifier(owner or SUPERUSER)
        )
        self.execute(statement, dbname="postgres")
        return PostgresDatabase(self, name)

    def drop_database(self, name: str) -> None:
        """Drop a database, closing its connections first (``WITH (FORCE)``)."""
        self.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)), dbname="postgres")

    def create_role(
        self,
        name: str,
        *,
        password: str | None = None,
        login: bool = True,
        superuser: bool = False,
        read_only: bool = False,
    ) -> str:
        """A role (cluster-wide: give it a unique name). Without a password it cannot log in over TCP.
        ``read_only`` reads every table (``pg_read_all_data``) and writes nothing
        (``default_transaction_read_only``)."""
        statement = sql.SQL("CREATE ROLE {} WITH {} {}").format(
            sql.Identifier(name),
            sql.SQL("LOGIN" if login else "NOLOGIN"),
            sql.SQL("SUPERUSER" if superuser else "NOSUPERUSER"),
        )
        if password is not None:
            statement = sql.SQL("{} PASSWORD {}").format(statement, sql.Literal(password))
        self.execute(statement, dbname="postgres")
        if read_only:
            self.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(name)), dbname="postgres")
            self.execute(
                sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(sql.Identifier(name)),
                dbname="postgres",
            )
        return name

    # -- internals ---------------------------------------------------------------------------

    def _spawn_args(self) -> dict[str, Any]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(TZ="UTC", LC_ALL="C", LANG="C")
        args: dict[str, Any] = {"env": env, "cwd": self.root, "start_new_session": True}
        if os.geteuid() == 0:
            args.update(user=OS_USER, group=self._os_account().pw_gid, extra_groups=[])
        return args

    @staticmethod
    def _os_account() -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(OS_USER)
        except KeyError:
            raise PostgresNotFoundError(
                f"running as root, the cluster needs the OS user {OS_USER!r} (Debian's postgresql package creates it)"
            ) from None

    def _initdb(self, *, timeout: float) -> None:
        root = Path(tempfile.mkdtemp(prefix="stigmer-pg-", dir=self._base_dir))
        self._root = root
        with _LIVE_LOCK:
            _LIVE[id(self)] = self
        (root / "sock").mkdir()
        pwfile = root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            account = self._os_account()
            for path in (root, root / "sock", pwfile):
                os.chown(path, account.pw_uid, account.pw_gid)
        cmd = [str(self._bindir / "initdb"), "-D", str(root / "data"), "-U", SUPERUSER]
        cmd += ["--pwfile", str(pwfile), "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]
        with open(root / "postgres.log", "ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} {' '.join(cmd)}\n".encode())
            log.flush()
            done = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                **self._spawn_args(),
            )
        pwfile.unlink()
        if done.returncode != 0:
            raise PostgresExitedError(
                f"initdb exited with code {done.returncode}; log {self.log_path}:\n{self.log_tail()}"
            )
        (root / "data" / "pg_hba.conf").write_text(_HBA.format(superuser=SUPERUSER))

    def _probe(self) -> None:
        proc = self._proc
        if proc is None:
            raise RuntimeError("postgres was never started")
        if (code := proc.poll()) is not None:
            raise PostgresExitedError(
                f"postgres at {HOST}:{self._port} exited with code {code}; log {self.log_path}:\n{self.log_tail()}"
            )
        # As pg_ctl -w does: this postmaster says "ready" in its lock file before we dial (a port
        # someone else holds would accept and keep a connect waiting for connect_timeout).
        lines = self._lock_file()
        if len(lines) < 8 or lines[0] != str(proc.pid) or lines[7].strip() != "ready":
            raise AssertionError(f"postmaster.pid does not say pid {proc.pid} is ready yet")
        try:
            with self.connect("postgres") as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError as exc:
            raise AssertionError(str(exc).strip()) from None

    def _pid_if_running(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _lock_file(self) -> list[str]:
        """postmaster.pid's lines (1: pid, 7: SysV key and id, 8: status); [] when there is none."""
        try:
            return (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return []

    def _shmid(self) -> int | None:
        with contextlib.suppress(IndexError, ValueError):
            return int(self._lock_file()[6].split()[1])
        return None

    # -- context manager ---------------------------------------------------------------------

    def __enter__(self) -> PostgresServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"PostgresServer({HOST}:{self._port}, pid={self.pid}, {state}, root={self._root})"
