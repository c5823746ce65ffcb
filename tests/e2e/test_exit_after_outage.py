"""`server start --exit-after-outage`: the opt-in answer to "Can I disable auto-reconnection?"."""

from __future__ import annotations

import time

import pytest

from stigmer.testing.eventually import wait_until
from stigmer.testing.factories import StigmerServerFactory, TemporalDevServerFactory
from stigmer.testing.ports import free_port
from stigmer.testing.temporal import TemporalDevServer

pytestmark = pytest.mark.temporal


def test_a_server_that_never_reaches_temporal_stops_with_69(
    stigmer_server_factory: StigmerServerFactory,
) -> None:
    server = stigmer_server_factory(temporal=f"127.0.0.1:{free_port()}", extra=["--exit-after-outage", "2s"])
    began = time.monotonic()
    assert server.proc is not None
    wait_until(
        lambda: server.proc is not None and server.proc.poll() is not None,
        timeout=15,
        what="the server to stop after 2 s without Temporal",
    )
    assert server.proc.returncode == 69
    assert time.monotonic() - began < 10
    log = server.log()
    assert "Temporal has been unavailable for 2s (--exit-after-outage)" in log
    assert "Stigmer Server stopped" in log  # a clean stop, not a crash


def test_an_outage_shorter_than_the_limit_is_ridden_out(
    stigmer_server_factory: StigmerServerFactory,
    temporal_dev_server_factory: TemporalDevServerFactory,
) -> None:
    temporal = temporal_dev_server_factory(persistent=True)
    server = stigmer_server_factory(temporal=temporal.address, extra=["--exit-after-outage", "20s"])
    assert server.cli("server", "wait", "--timeout", "30").code == 0
    temporal.kill()
    wait_until(lambda: server.cli("server", "status").code == 3, timeout=10, what="the server to notice")
    temporal.start()
    assert server.cli("server", "wait", "--timeout", "30").code == 0
    assert server.proc is not None and server.proc.poll() is None  # still serving


def test_bad_durations_are_refused_at_start() -> None:
    import subprocess

    from stigmer.testing.server import stigmer_binary

    result = subprocess.run(
        [stigmer_binary(), "server", "start", "--exit-after-outage", "soon"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "expected a duration like 90s, 5m or 1h" in result.stderr


def test_server_status_says_what_to_fix_for_a_missing_namespace(
    stigmer_server_factory: StigmerServerFactory, temporal: TemporalDevServer
) -> None:
    import json

    server = stigmer_server_factory(temporal=temporal.address, extra=["--namespace", "prod-missing"])

    def failed() -> dict[str, object]:
        result = server.cli("server", "status", "-o", "json")
        assert result.code == 3, result
        status: dict[str, object] = json.loads(result.out)
        assert "does not exist" in str(status.get("last_error", "")), status
        return status

    status = wait_until(failed, timeout=15, what="the first attempt to fail")
    assert f"namespace 'prod-missing' does not exist on {temporal.address}" in str(status["last_error"])
    assert "temporal operator namespace create -n prod-missing" in str(status["last_error"])
    assert float(str(status["next_retry_in_seconds"])) >= 20  # the backoff cap, not 1 s
    human = server.cli("server", "status").out
    assert "namespace 'prod-missing' does not exist" in human
