"""stigmer.client against a real server and a real Temporal (issue 13): results, paging, Watch,
the waits, and every error a user can meet, typed."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from pathlib import Path

import pytest

from stigmer.client import (
    AgentExecution,
    AsyncClient,
    Client,
    InvalidArgumentError,
    NotFoundError,
    Phase,
    PhaseNotReachedError,
    ServerUnreachableError,
    TemporalUnavailableError,
    UnauthenticatedError,
    WaitTimeoutError,
    to_json,
)
from stigmer.contract import UNAVAILABLE_MESSAGE
from stigmer.temporal.agents import DELAY_ENV, FAIL_ENV
from stigmer.testing.ports import free_port

pytestmark = pytest.mark.temporal


@pytest.fixture
def server(temporal, stigmer_server_factory):
    return stigmer_server_factory(temporal=temporal.address)


@pytest.fixture
def down_server(stigmer_server_factory):
    """A server whose Temporal address has nothing listening."""
    return stigmer_server_factory(temporal=f"127.0.0.1:{free_port()}")


def test_create_wait_read_list_and_watch(server) -> None:
    with Client(address=server.address, timeout=10) as client:
        status = client.wait_temporal_connected(timeout=30)
        assert status.connected and status.workers_running == 3 and client.is_temporal_connected()
        created = [client.create_agent_execution(agent="echo", message=f"hello {n}") for n in range(3)]
        assert all(isinstance(c, AgentExecution) and c.phase is Phase.PENDING for c in created)
        done = client.wait_for_phase(created[0].id, [Phase.COMPLETED], timeout=30)
        assert done.phase is Phase.COMPLETED and done.completed_at is not None
        assert done.messages[0].role == "user" and done.replies
        assert client.get_agent_execution(created[0].id) == done
        # Transparent paging: one item per page, every execution once, newest first.
        listed = [e.id for e in client.list_agent_executions(page_size=1)]
        assert listed[:3] == [c.id for c in reversed(created)]
        page = client.list_agent_executions_page(page_size=2)
        assert len(page.items) == 2 and page.next_page_token
        states = list(client.watch_agent_execution(created[1].id))
        assert states[-1].phase.terminal and all(not s.phase.terminal for s in states[:-1])
        assert to_json(done)["phase"] == "COMPLETED" and to_json(done)["id"] == done.id


def test_the_errors_are_typed_and_name_what_is_wrong(server) -> None:
    with Client(address=server.address, timeout=10) as client:
        client.wait_temporal_connected(timeout=30)
        with pytest.raises(NotFoundError, match="not found") as missing:
            client.get_agent_execution("aex-01J9Z3K4T8Q6W2C5N7R1V0XBYD")
        assert missing.value.code == "NOT_FOUND"  # type: ignore[attr-defined]
        with pytest.raises(InvalidArgumentError) as invalid:
            client.create_agent_execution(agent="echo", message="")
        assert invalid.value.field == "message" and invalid.value.code == "INVALID_ARGUMENT"  # type: ignore[attr-defined]
        failing = client.create_agent_execution(agent="echo", message="x", runtime_env={FAIL_ENV: "boom"})
        with pytest.raises(PhaseNotReachedError, match="ended FAILED") as ended:
            client.wait_for_phase(failing.id, ["COMPLETED"], timeout=30)
        assert ended.value.execution.phase is Phase.FAILED  # type: ignore[attr-defined]


def test_an_unreachable_server_is_named_within_the_timeout() -> None:
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with Client(address=address, timeout=2) as client, pytest.raises(ServerUnreachableError) as caught:
        client.status()
    assert time.monotonic() - started < 5
    assert caught.value.address == address and address in str(caught.value)


def test_temporal_down_is_temporal_unavailable_with_retry_after(down_server) -> None:
    with Client(address=down_server.address, timeout=10) as client:
        assert not client.is_temporal_connected()
        with pytest.raises(TemporalUnavailableError) as caught:
            client.create_agent_execution(agent="echo", message="hello")
        assert str(caught.value) == UNAVAILABLE_MESSAGE and caught.value.retry_after >= 1
        assert caught.value.state in ("DISCONNECTED", "CONNECTING")
        started = time.monotonic()
        with pytest.raises(WaitTimeoutError, match=r"still (DISCONNECTED|CONNECTING)"):
            client.wait_temporal_connected(timeout=1.0)
        assert time.monotonic() - started < 4
    # Opt-in retry, bounded: a budget shorter than the server's retry_after gives up at once.
    with Client(address=down_server.address, timeout=10, retry_unavailable=0.5) as client:
        started = time.monotonic()
        with pytest.raises(TemporalUnavailableError):
            client.create_agent_execution(agent="echo", message="hello")
        assert time.monotonic() - started < 2


def test_the_opt_in_retry_rides_out_temporal_coming_up(temporal_dev_server_factory, stigmer_server_factory) -> None:
    port = free_port()
    server = stigmer_server_factory(temporal=f"127.0.0.1:{port}")
    with Client(address=server.address, timeout=10, retry_unavailable=60) as client:
        with Client(address=server.address, timeout=10) as plain, pytest.raises(TemporalUnavailableError):
            plain.create_agent_execution(agent="echo", message="without the retry: refused")
        starting = threading.Thread(target=temporal_dev_server_factory, kwargs={"port": port, "wait": False})
        starting.start()
        try:
            created = client.create_agent_execution(agent="echo", message="retried until Temporal answered")
        finally:
            starting.join(timeout=30)
        assert client.wait_for_phase(created.id, ["COMPLETED"], timeout=30).phase is Phase.COMPLETED


def test_a_wrong_token_is_unauthenticated(temporal, stigmer_server_factory, monkeypatch) -> None:
    monkeypatch.setenv("STIGMER_AUTH_TOKEN", "s3cret-token-for-the-test")
    server = stigmer_server_factory(temporal=temporal.address)
    with Client(address=server.address, token="wrong", timeout=5) as client, pytest.raises(UnauthenticatedError):
        client.get_agent_execution("aex-01J9Z3K4T8Q6W2C5N7R1V0XBYD")
    with Client(address=server.address, timeout=5) as client:  # the right one, from the environment
        client.wait_temporal_connected(timeout=30)


def test_close_is_safe_twice_and_a_closed_client_says_so(server) -> None:
    client = Client(address=server.address, timeout=5)
    client.status()
    client.close()
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.status()


async def test_the_async_client_waits_for_a_temporal_started_after_the_server(
    temporal_dev_server_factory, stigmer_server_factory
) -> None:
    port = free_port()
    server = await asyncio.to_thread(stigmer_server_factory, temporal=f"127.0.0.1:{port}")
    async with AsyncClient(address=server.address, timeout=10) as client:
        assert not await client.is_temporal_connected()
        waiting = asyncio.create_task(client.wait_temporal_connected(timeout=60))
        temporal = await asyncio.to_thread(temporal_dev_server_factory, port=port, wait=False)
        await temporal.wait_ready_async()
        status = await waiting
        assert status.connected
        created = await client.create_agent_execution(agent="echo", message="after Temporal came up")
        phases = [e.phase async for e in client.watch_agent_execution(created.id)]
        assert phases[-1] is Phase.COMPLETED
        assert [e.id async for e in client.list_agent_executions(phase="COMPLETED")] == [created.id]


def test_the_readme_example_runs_as_written(server, monkeypatch, capsys) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    example = next(b for b in blocks if "from stigmer.client import Client, Phase" in b)
    monkeypatch.setenv("STIGMER_SERVER_ADDRESS", server.address)
    with Client(address=server.address, timeout=10) as client:
        client.wait_temporal_connected(timeout=30)
    exec(compile(example, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[-2] == "COMPLETED" and printed[-1].startswith("[echo]"), printed


def test_a_watch_whose_server_goes_away_raises_rather_than_ends(server) -> None:
    with Client(address=server.address, timeout=10) as client:
        client.wait_temporal_connected(timeout=30)
        slow = client.create_agent_execution(agent="echo", message="slow", runtime_env={DELAY_ENV: "30"})
        updates = client.watch_agent_execution(slow.id)
        assert next(updates).id == slow.id  # the stream is open: its first state came
        server.kill()
        with pytest.raises(ServerUnreachableError, match=server.address):
            for update in updates:
                assert not update.phase.terminal, "the server died: the stream cannot have finished"
