"""The three scenarios users run by hand (the quick-start guide), automated with real processes:
the installed `stigmer` console script and a real Temporal dev server, killed and restarted."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from stigmer.testing.eventually import wait_until
from stigmer.testing.ports import free_port
from stigmer.testing.server import stigmer_binary, wait_for_log

pytestmark = pytest.mark.temporal

UNAVAILABLE_LINES = [
    "❌ Error: Temporal workflow engine is unavailable. Please try again later.",
    "Code: UNAVAILABLE",
]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_flags(request) -> list[str]:
    """The guide's three scenarios run on both stores: SQLite in the data dir, and PostgreSQL."""
    if request.param == "sqlite":
        return []
    return ["--database-url", request.getfixturevalue("postgres_database").url]


def create(server, message: str = "hello"):
    return server.cli("agent-execution", "create", "--agent", "echo", "--message", message)


def assert_created(result) -> str:
    assert result.code == 0, result.text
    assert result.out.startswith("✅ Created: aex-"), result.text
    return result.out.split("Created: ", 1)[1].strip()


def test_delayed_start_server_first_temporal_later(temporal_dev_server_factory, stigmer_server_factory, store_flags):
    port = free_port()
    server = stigmer_server_factory(temporal=f"127.0.0.1:{port}", extra=store_flags)
    wait_for_log(server, "Failed initial Temporal connection - will retry automatically")
    # The API serves while Temporal is down, and says so.
    status = server.cli("server", "status")
    assert status.code == 3 and "DISCONNECTED" in status.out, status.text
    started = time.monotonic()
    wait_until(
        lambda: time.monotonic() - started >= 5 and "Temporal reconnection failed, will retry" in server.log(),
        timeout=15,
        what="5 s of retries",
    )
    temporal_dev_server_factory(port=port)
    wait_for_log(server, "✅ Temporal reconnected successfully", timeout=10)
    for line in ("✅ Workers restarted successfully", "✅ Workflow creators reinjected successfully"):
        assert line in server.log()
    execution = assert_created(create(server))
    follow = server.cli("agent-execution", "watch", execution)
    assert follow.code == 0 and "COMPLETED" in follow.out, follow.text


def test_temporal_restart(temporal_dev_server_factory, stigmer_server_factory, store_flags):
    temporal = temporal_dev_server_factory()
    server = stigmer_server_factory(temporal=temporal.address, extra=store_flags)
    wait_for_log(server, "✅ Initial Temporal connection successful")
    assert "All Temporal workers started" in server.log()
    assert_created(create(server, "before"))
    temporal.kill(signal.SIGINT)
    wait_for_log(server, "Temporal connection unhealthy, initiating reconnection", timeout=10)
    down = create(server, "while down")
    assert down.code == 75, down.text
    assert down.err.splitlines()[:2] == UNAVAILABLE_LINES, down.text
    listing = server.cli("agent-execution", "list", "-o", "json")
    assert "while down" not in listing.out  # an UNAVAILABLE create leaves no record
    temporal.start()
    temporal.wait_ready()
    answered = time.monotonic()
    results = []

    def created() -> bool:
        results.append(create(server, "after"))
        return results[-1].code == 0

    wait_until(created, timeout=3.0, interval=0.05, what="a create succeeding within 3 s of Temporal answering")
    took = time.monotonic() - answered
    execution = assert_created(results[-1])
    assert server.cli("agent-execution", "watch", execution).code == 0
    log = server.log()
    assert "Stopping old workers" in log and "✅ Temporal reconnected successfully" in log
    print(f"restart: create succeeded {took:.2f}s after Temporal answered ({len(results)} tries)")


def test_connection_loss_through_a_black_hole(
    temporal_dev_server_factory, tcp_proxy_factory, stigmer_server_factory, store_flags
):
    temporal = temporal_dev_server_factory()
    proxy = tcp_proxy_factory(temporal.address)
    server = stigmer_server_factory(temporal=proxy.address, extra=store_flags)
    wait_for_log(server, "✅ Initial Temporal connection successful")
    assert_created(create(server, "before"))
    offset = len(server.log())
    proxy.blackhole()
    wait_for_log(server, "Temporal connection unhealthy, initiating reconnection", timeout=10, after=offset)
    status = server.cli("server", "status")
    assert status.code == 3, status.text
    down = create(server, "into the hole")
    assert down.code == 75, down.text
    proxy.forward()
    wait_for_log(server, "✅ Temporal reconnected successfully", timeout=40, after=offset)
    assert server.cli("server", "wait", "--timeout", "10").code == 0
    assert_created(create(server, "after"))


def test_managed_temporal_is_restarted_after_sigkill(stigmer_server_factory):
    port = free_port()
    server = stigmer_server_factory(temporal=f"127.0.0.1:{port}", extra=["--managed-temporal"])
    assert server.cli("server", "wait", "--timeout", "30").code == 0
    first = assert_created(create(server, "before"))
    [child] = server.children()
    offset = len(server.log())
    os.killpg(child, signal.SIGKILL)
    wait_for_log(server, "Managed Temporal exited", timeout=10, after=offset)
    wait_for_log(server, "Restarted managed Temporal dev server", timeout=10, after=offset)
    wait_for_log(server, "✅ Temporal reconnected successfully", timeout=30, after=offset)
    second = assert_created(create(server, "after"))
    assert server.cli("agent-execution", "watch", second).code == 0
    # Persisted under the data dir: the first execution is still known after the restart.
    assert server.cli("agent-execution", "get", first).code == 0


def test_live_diagram_highlights_the_running_state(temporal, stigmer_server_factory):
    server = stigmer_server_factory(temporal=temporal.address)
    assert server.cli("server", "wait", "--timeout", "20").code == 0
    result = server.cli("diagram", "--live")
    assert result.code == 0, result.text
    assert "class CONNECTED s_active" in result.out
    assert "Temporal connection: CONNECTED" in result.err


def test_sigterm_shuts_down_gracefully_and_a_second_signal_exits_at_once(temporal, stigmer_server_factory):
    server = stigmer_server_factory(temporal=temporal.address)
    assert server.cli("server", "wait", "--timeout", "20").code == 0
    proc = server.proc
    assert proc is not None
    stopped = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    took = time.monotonic() - stopped
    log = server.log()
    for line in (
        "Received SIGTERM - shutting down gracefully",
        "Shutting down Stigmer Server",
        "Temporal connection stopped",
        "Stigmer Server stopped",
    ):
        assert line in log, line
    assert "Traceback" not in log
    assert took < 10
    server.proc = None

    # Again, now with a second signal while the first shutdown waits for an in-flight Watch.
    server2 = stigmer_server_factory(temporal=temporal.address)
    assert server2.cli("server", "wait", "--timeout", "20").code == 0
    slow = server2.cli(
        "agent-execution", "create", "--agent", "echo", "--message", "slow", "-e", "STIGMER_AGENT_DELAY_SECONDS=30"
    )
    execution = assert_created(slow)
    watcher = subprocess.Popen(
        [stigmer_binary(), "agent-execution", "watch", execution, "--address", server2.address],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        proc2 = server2.proc
        assert proc2 is not None
        os.killpg(proc2.pid, signal.SIGINT)
        wait_for_log(server2, "Shutting down Stigmer Server", timeout=10)
        os.killpg(proc2.pid, signal.SIGINT)
        assert proc2.wait(timeout=5) == 130
        assert "Second SIGINT - exiting at once" in server2.log()
    finally:
        watcher.kill()
        watcher.wait(timeout=10)
    server2.stop()
