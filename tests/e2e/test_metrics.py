"""/metrics of a real `stigmer server start` process with a real Temporal dev server that is up,
killed and back (issue 17): scraped over HTTP with a timeout and parsed with prometheus_client's
parser, never with regular expressions. Also the Temporal SDK's own metrics, on their address."""

from __future__ import annotations

import signal
import socket
import subprocess
import urllib.request
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from stigmer.client import Client, TemporalUnavailableError
from stigmer.errors import ExitCode
from stigmer.testing.eventually import wait_until
from stigmer.testing.ports import free_port
from stigmer.testing.server import StigmerServerProcess, stigmer_binary

pytestmark = [pytest.mark.temporal, pytest.mark.timeout(180)]

Labels = tuple[tuple[str, str], ...]
Metrics = dict[tuple[str, Labels], float]
CREATE = "stigmer.v1.AgentExecutionService/Create"


def scrape(url: str) -> Metrics:
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def state(metrics: Metrics) -> str:
    [current] = [dict(labels)["state"] for (name, labels), v in metrics.items()
                 if name == "stigmer_temporal_connection_state" and v == 1.0]  # fmt: skip
    return current


def total(metrics: Metrics, name: str, **labels: str) -> float:
    """The sum over the series of ``name`` whose labels include ``labels``."""
    return sum(v for (n, have), v in metrics.items() if n == name and set(labels.items()) <= set(have))


def until(server: StigmerServerProcess, check: Callable[[Metrics], bool], what: str, timeout: float = 30) -> Metrics:
    seen: list[Metrics] = []

    def ok() -> bool:
        seen.append(scrape(server.metrics_url))
        return check(seen[-1])

    wait_until(ok, timeout=timeout, interval=0.1, what=what)
    return seen[-1]


def test_the_metrics_follow_an_outage_and_count_what_was_refused(
    temporal_dev_server_factory, stigmer_server_factory
) -> None:
    temporal = temporal_dev_server_factory(persistent=True)
    server = stigmer_server_factory(temporal=temporal)
    until(server, lambda m: state(m) == "CONNECTED", "the state gauge at CONNECTED")
    workers = until(
        server,
        lambda m: total(m, "stigmer_temporal_workers_running") == 3,
        "three workers running",
    )
    assert total(workers, "stigmer_temporal_outage_seconds_count") == 0  # waiting for the first connection is none
    with Client(address=server.address, timeout=10) as client:
        done = client.wait_for_phase(client.create_agent_execution(agent="echo", message="hi").id, ["COMPLETED"], 60)
        assert done.phase.value == "COMPLETED"
        until(
            server,
            lambda m: (
                total(m, "stigmer_executions", kind="agent_execution", phase="COMPLETED") == 1
                and total(m, "stigmer_executions", kind="agent_execution") == 1
            ),
            "the executions gauge counting one COMPLETED agent execution",
        )
        sdk = scrape(server.temporal_metrics_url)
        assert any(name.startswith("temporal_") for name, _ in sdk), sorted({n for n, _ in sdk})[:20]
        assert total(sdk, "temporal_request_total") > 0  # the SDK's own counter, Prometheus-named

        until(
            server,
            lambda m: total(m, "stigmer_temporal_probe_total", probe="liveness", result="answered") >= 1,
            "the liveness probe's answers counted",
        )
        temporal.kill(signal.SIGKILL)
        down = until(server, lambda m: state(m) != "CONNECTED", "the state gauge leaving CONNECTED", timeout=15)
        lost = {"from": "CONNECTED", "trigger": "health_failed"}
        assert total(down, "stigmer_temporal_transitions_total", **lost) == 1
        assert total(down, "stigmer_temporal_workers_running") == 0
        with pytest.raises(TemporalUnavailableError):
            client.create_agent_execution(agent="echo", message="while down")
        refused = until(
            server,
            lambda m: total(m, "stigmer_grpc_requests_total", method=CREATE, code="UNAVAILABLE") == 1,
            "the refused create counted by code",
        )
        assert total(refused, "stigmer_create_fast_fails_total", kind="agent_execution") == 1
        assert total(refused, "stigmer_grpc_requests_total", method=CREATE, code="OK") == 1
        assert total(refused, "stigmer_temporal_outage_age_seconds") > 0

        temporal.start()
        temporal.wait_ready()
        back = until(server, lambda m: state(m) == "CONNECTED", "the state gauge back at CONNECTED")
        assert total(back, "stigmer_temporal_outage_seconds_count") == 1
        assert total(back, "stigmer_temporal_outage_seconds_sum") > 0
        assert total(back, "stigmer_temporal_outage_age_seconds") == 0
        assert total(back, "stigmer_temporal_transitions_total", to="CONNECTED", trigger="reconnect_ok") == 1
        assert total(back, "stigmer_temporal_reconnect_attempts_total", outcome="success") == 2
        # The reconciler ran on reconnecting; the record it found was already finished.
        until(
            server,
            lambda m: total(m, "stigmer_reconciler_passes_total") >= 2,
            "a reconciliation pass on each entry to CONNECTED",
        )
        assert client.create_agent_execution(agent="echo", message="after").id


@pytest.mark.parametrize("flag", ["--metrics-address", "--temporal-metrics-address"])
def test_a_taken_metrics_address_is_one_line_and_exit_78(tmp_path, flag: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        other = "--temporal-metrics-address" if flag == "--metrics-address" else "--metrics-address"
        args = [stigmer_binary(), "server", "start", "--data-dir", str(tmp_path), "--log-file", "none",
                "--address", f"127.0.0.1:{free_port()}", "--temporal-host-port", f"127.0.0.1:{free_port()}",
                flag, address, other, "none"]  # fmt: skip
        result = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    assert result.returncode == ExitCode.CONFIG, result.stderr
    errors = [line for line in result.stderr.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and address in errors[0] and flag in errors[0], result.stderr
    assert "Traceback" not in result.stderr and "started successfully" not in result.stderr
