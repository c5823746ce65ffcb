"""A client of two real stigmer servers (issue 16, "clients fail over"): it uses both, keeps working
through a SIGKILL of one -- reads and creates, not one call failing -- and uses the restarted one
again, all by gRPC's round_robin and retries (stigmer.client.target).

Each server has its own SQLite file and task queues on the session's Temporal; the second dials
Temporal through a proxy, so that GetStatus (temporal_address) tells which server answered, and
each server's records tell where the creates landed.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest

from stigmer.client import Client, Phase, StigmerError
from stigmer.temporal import names
from stigmer.testing.eventually import wait_until
from stigmer.testing.server import StigmerServerProcess
from tests.conftest import TcpProxyFactory

pytestmark = [pytest.mark.temporal, pytest.mark.timeout(180)]
QUEUES = (names.AGENT_EXECUTION_QUEUE_ENV, names.WORKFLOW_EXECUTION_QUEUE_ENV, names.WORKFLOW_VALIDATION_QUEUE_ENV)


class Pair:
    """Two servers, named "a" and "b", (re)started with task queues of their own."""

    def __init__(self, start: Callable[..., StigmerServerProcess], temporal: str, proxied: str) -> None:
        self._start = start
        self.a = start("a", temporal)
        self.b = start("b", proxied)
        #: GetStatus's temporal_address -> which server answered.
        self.names = {temporal: "a", proxied: "b"}

    @property
    def address(self) -> str:
        return f"{self.a.address},{self.b.address}"

    def restart(self, server: StigmerServerProcess) -> None:
        self._start("a" if server is self.a else "b", server.temporal, server)


@pytest.fixture
def pair(temporal, stigmer_server_factory, tcp_proxy_factory: TcpProxyFactory, monkeypatch) -> Iterator[Pair]:
    suffix = uuid.uuid4().hex[:8]

    def start(name: str, temporal_address: str, again: StigmerServerProcess | None = None) -> StigmerServerProcess:
        with monkeypatch.context() as scoped:  # the process inherits os.environ when it is spawned
            for env in QUEUES:
                scoped.setenv(env, f"{env.lower()}-{suffix}-{name}")
            if again is None:
                server: StigmerServerProcess = stigmer_server_factory(temporal=temporal_address)
            else:
                server = again.start()
                # start() finds the killed process's readiness line in the appended log: wait for answers.
                wait_until(lambda: _answers(server), timeout=20, what=f"the restarted server {name} to answer")
        with Client(address=server.address, timeout=10) as client:
            client.wait_temporal_connected(timeout=30)
        return server

    yield Pair(start, temporal.address, tcp_proxy_factory(temporal.address).address)


def _answers(server: StigmerServerProcess) -> bool:
    try:
        with Client(address=server.address, timeout=1) as client:
            client.status()
    except StigmerError:
        return False
    return True


def answered_by(pair: Pair, client: Client, calls: int) -> list[str]:
    return [pair.names[client.status().temporal_address] for _ in range(calls)]


def ids_on(server: StigmerServerProcess) -> set[str]:
    with Client(address=server.address, timeout=10) as client:
        return {e.id for e in client.list_agent_executions()}


def test_a_client_of_two_servers_uses_both_rides_out_a_kill_and_uses_the_restarted_one_again(pair: Pair) -> None:
    with Client(address=pair.address, timeout=10) as client:
        wait_until(lambda: set(answered_by(pair, client, 4)) == {"a", "b"}, timeout=20, what="both servers in use")
        seen = answered_by(pair, client, 10)
        assert seen.count("a") == seen.count("b") == 5, seen  # round robin
        created = {client.create_agent_execution(agent="echo", message=f"before {n}").id for n in range(6)}
        on_a, on_b = ids_on(pair.a), ids_on(pair.b)
        assert created == on_a | on_b and len(on_a) == len(on_b) == 3  # the creates took turns too

        # SIGKILL a while a caller reads and creates without pause: not one of its calls fails.
        busy = Busy(client)
        with busy.running():
            wait_until(lambda: busy.rounds >= 8, timeout=30, what="the caller to get going")
            pair.a.kill()
            killed_at = busy.rounds
            wait_until(lambda: busy.rounds >= killed_at + 40, timeout=60, what="calls after the kill")
        assert busy.errors == [], busy.errors
        assert set(answered_by(pair, client, 10)) == {"b"}
        late = client.create_agent_execution(agent="echo", message="after the kill")
        assert late.id in ids_on(pair.b) and busy.created & ids_on(pair.b)
        with Client(address=pair.b.address, timeout=10) as b:
            assert b.wait_for_phase(late.id, ["COMPLETED"], timeout=60).phase is Phase.COMPLETED
        assert {e.id for e in client.list_agent_executions()} == ids_on(pair.b)  # the survivor's records

        pair.restart(pair.a)  # same port, same data dir
        wait_until(
            lambda: set(answered_by(pair, client, 4)) == {"a", "b"},
            timeout=30,
            what="the client to use the restarted server again",
        )
        seen = answered_by(pair, client, 10)
        assert seen.count("a") == seen.count("b") == 5, seen
        again = {client.create_agent_execution(agent="echo", message=f"again {n}").id for n in range(4)}
        assert len(again & ids_on(pair.a)) == len(again & ids_on(pair.b)) == 2


class Busy:
    """Callers (threads) that each call GetStatus, List and Create in a loop; every error is kept.
    Several, so that calls are in flight on the server when it is killed."""

    def __init__(self, client: Client, callers: int = 4) -> None:
        self.client = client
        self.callers = callers
        self.rounds = 0
        self.errors: list[str] = []
        self.created: set[str] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.client.status()
                self.client.list_agent_executions_page(page_size=5)
                created = self.client.create_agent_execution(agent="echo", message="busy").id
            except StigmerError as err:
                with self._lock:
                    self.errors.append(f"{type(err).__name__}: {err}")
                continue
            with self._lock:
                self.created.add(created)
                self.rounds += 1

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        threads = [threading.Thread(target=self._run, name=f"caller-{n}", daemon=True) for n in range(self.callers)]
        for thread in threads:
            thread.start()
        try:
            yield
        finally:
            self._stop.set()
            for thread in threads:
                thread.join(timeout=30)
        assert not any(thread.is_alive() for thread in threads), "a caller did not stop"
