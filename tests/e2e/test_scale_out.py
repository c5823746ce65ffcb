"""Split roles with real processes: API servers and workers on one PostgreSQL and one Temporal.

The zero-loss test (issue 16, item 5): two `--role api` servers and two `stigmer worker start`
processes; eight clients create continuously, each with a request id it reuses on the other API
server when one does not answer; the test SIGKILLs one API server, one worker and Temporal, in
turn, and restarts each. Then every acknowledged create must reach a terminal phase, exactly one
Temporal workflow must exist per record, the clients must have seen nothing but UNAVAILABLE (or a
connection refused) and the surviving API server must have answered throughout.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import grpc
import pytest

from stigmer.api import agent_execution_pb2, agent_execution_pb2_grpc
from stigmer.store import Phase, Store
from stigmer.testing.eventually import wait_until
from stigmer.testing.postgres import PostgresDatabase
from stigmer.testing.server import StigmerServerProcess

pytestmark = [pytest.mark.temporal, pytest.mark.postgres, pytest.mark.timeout(300)]

CLIENTS = 8
CALL = 5.0


def api(factory, temporal, url: str) -> StigmerServerProcess:
    return factory(temporal=temporal, extra=["--role", "api", "--database-url", url])


def worker(factory, temporal, url: str) -> StigmerServerProcess:
    return factory(temporal=temporal, extra=["--role", "worker", "--database-url", url])


def test_an_api_server_and_a_worker_split_the_work(
    temporal_dev_server_factory, stigmer_server_factory, postgres_database: PostgresDatabase
) -> None:
    temporal = temporal_dev_server_factory()
    front = api(stigmer_server_factory, temporal, postgres_database.url)
    back = worker(stigmer_server_factory, temporal, postgres_database.url)
    with grpc.insecure_channel(front.address) as channel:
        stub = agent_execution_pb2_grpc.AgentExecutionServiceStub(channel)
        wait_until(lambda: _try_create(stub, "hi") is not None, timeout=30, what="the API accepting creates")
    store = Store.connect(postgres_database.url, data_dir=front.data_dir)
    try:
        wait_until(
            lambda: all(r.phase is Phase.COMPLETED for r in store.list_agent_executions()[0]),
            timeout=30,
            what="the worker process ran it",
        )
    finally:
        store.close()
    assert "workers: agent,workflow,validation" in back.log() and "api (creators, no workers)" in front.log()
    # The worker serves status (and health) but not the API.
    assert back.cli("server", "status").code == 0
    listing = back.cli("agent-execution", "list")
    assert listing.code != 0 and "UNIMPLEMENTED" in listing.text, listing.text


def _try_create(stub: agent_execution_pb2_grpc.AgentExecutionServiceStub, message: str) -> str | None:
    try:
        return stub.Create(
            agent_execution_pb2.CreateAgentExecutionRequest(agent="echo", message=message), timeout=CALL
        ).id
    except grpc.RpcError:
        return None


@dataclass
class Load:
    addresses: list[str]
    acknowledged: dict[str, str] = field(default_factory=dict)  # request id -> execution id
    codes: Counter[str] = field(default_factory=Counter)
    per_server: Counter[str] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, n: int) -> None:
        channels = [grpc.insecure_channel(a) for a in self.addresses]
        stubs = [agent_execution_pb2_grpc.AgentExecutionServiceStub(c) for c in channels]
        try:
            i = 0
            while not self.stop.is_set():
                request = agent_execution_pb2.CreateAgentExecutionRequest(
                    agent="echo", message=f"client {n} #{i}", request_id=str(uuid.uuid4())
                )
                i += 1
                deadline = time.monotonic() + 60
                turn = n
                while not self.stop.is_set() and time.monotonic() < deadline:
                    index = turn % len(stubs)
                    turn += 1
                    try:
                        made = stubs[index].Create(request, timeout=CALL)
                    except grpc.RpcError as err:
                        with self.lock:
                            self.codes[err.code().name] += 1
                        self.stop.wait(0.05)  # a client's pause before it tries the other server
                        continue
                    with self.lock:
                        previous = self.acknowledged.setdefault(request.request_id, made.id)
                        self.per_server[self.addresses[index]] += 1
                    assert previous == made.id, "a retried request id answered another execution"
                    break
        finally:
            for channel in channels:
                channel.close()

    def count(self) -> int:
        with self.lock:
            return len(self.acknowledged)


@pytest.mark.parametrize("run", range(3))
def test_zero_loss_while_api_servers_workers_and_temporal_are_killed(
    run: int, temporal_dev_server_factory, stigmer_server_factory, postgres_database: PostgresDatabase
) -> None:
    temporal = temporal_dev_server_factory(persistent=True)
    url = postgres_database.url
    apis = [api(stigmer_server_factory, temporal, url) for _ in range(2)]
    workers = [worker(stigmer_server_factory, temporal, url) for _ in range(2)]
    load = Load([a.address for a in apis])
    threads = [threading.Thread(target=load.client, args=(n,), daemon=True) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()

    def progress(more: int, what: str) -> None:
        target = load.count() + more
        wait_until(lambda: load.count() >= target, timeout=60, what=what)

    try:
        progress(20, "the load running")
        apis[0].kill()  # one API server dies: the clients carry on through the other
        progress(20, "creates through the surviving API server")
        apis[0].start()
        workers[0].kill()  # one worker dies: its activities are retried on the other
        progress(20, "creates while a worker is down")
        workers[0].start()
        temporal.kill()  # Temporal dies: creates answer UNAVAILABLE, then resume
        temporal.start()
        temporal.wait_ready()
        progress(20, "creates after Temporal came back")
    finally:
        load.stop.set()
        for thread in threads:
            thread.join(timeout=CALL * 3)

    assert set(load.codes) <= {"UNAVAILABLE", "DEADLINE_EXCEEDED"}, load.codes  # never INTERNAL
    store = Store.connect(url, data_dir=apis[1].data_dir)
    try:
        acknowledged = set(load.acknowledged.values())

        def unfinished() -> list[str]:
            return [id for id in acknowledged if not store.get_agent_execution(id).phase.terminal]

        wait_until(lambda: unfinished() == [], timeout=120, interval=0.5, what="every acknowledged create terminal")
        records = store.list_agent_executions(page_size=1000)[0]
        assert acknowledged <= {r.id for r in records}
        assert len({r.request_id for r in records if r.request_id}) == len([r for r in records if r.request_id])
        phases = Counter(r.phase.value for r in records)
        print(
            f"zero-loss run {run}: {len(acknowledged)} acknowledged, phases {dict(phases)}, refusals {dict(load.codes)}"
        )
        # Nothing was lost on the way: a killed worker's activity ran again on the other one.
        assert dict(phases) == {"COMPLETED": len(records)}, dict(phases)
    finally:
        store.close()
    runs = _workflow_runs(temporal.address, [r.workflow_id for r in records])
    assert set(runs.values()) == {1}, {wid: n for wid, n in runs.items() if n != 1}
    assert load.per_server[apis[1].address] > 0


def _workflow_runs(address: str, workflow_ids: list[str]) -> dict[str, int]:
    """How many runs Temporal holds for each workflow id (one each: no duplicate was started)."""
    import asyncio
    from datetime import timedelta

    from temporalio.client import Client

    async def count() -> dict[str, int]:
        client = await Client.connect(address)
        found: Counter[str] = Counter()
        async for execution in client.list_workflows(
            'WorkflowType = "stigmer/agent-execution/invoke"', rpc_timeout=timedelta(seconds=10)
        ):
            found[execution.id] += 1
        return {wid: found[wid] for wid in workflow_ids}

    return asyncio.run(count())
