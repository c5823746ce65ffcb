"""The metrics wired into a server: the addresses' configuration and flags, an in-process server's
/metrics (Temporal nowhere: a create is refused and counted), a taken address, and the process's
one Temporal runtime. With Temporal up, killed and back: tests/e2e/test_metrics.py."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from loguru import logger
from prometheus_client.parser import text_string_to_metric_families

from stigmer.api import agent_execution_pb2, agent_execution_pb2_grpc
from stigmer.app import StigmerServer
from stigmer.cli import cli
from stigmer.config import Config
from stigmer.errors import ConfigError
from stigmer.temporal.connection import clients, process_runtime
from stigmer.temporal.names import TaskQueues
from stigmer.testing.eventually import eventually
from stigmer.testing.ports import free_port, is_port_free

NOWHERE = "127.0.0.1:1"


def test_a_config_made_in_code_serves_no_metrics_and_none_turns_them_off() -> None:
    assert Config().metrics_address is None and Config().temporal_metrics_address is None
    for off in ("none", "NONE", " none ", ""):
        config = Config(metrics_address=off, temporal_metrics_address=off)
        assert config.metrics_address is None and config.temporal_metrics_address is None
    config = Config.from_env(
        {"STIGMER_METRICS_ADDRESS": "0.0.0.0:9100", "STIGMER_TEMPORAL_METRICS_ADDRESS": "[::1]:9101"},
        temporal_security=None,
    )
    assert (config.metrics_address, config.temporal_metrics_address) == ("0.0.0.0:9100", "[::1]:9101")
    assert Config.from_env({"STIGMER_METRICS_ADDRESS": "0.0.0.0:9100"}, metrics_address="none").metrics_address is None
    with pytest.raises(ConfigError, match=r"--metrics-address .*none"):
        Config(metrics_address="9464")
    with pytest.raises(ConfigError, match="--temporal-metrics-address"):
        Config(temporal_metrics_address="localhost:http")


def test_server_start_help_names_the_metrics_flags_and_their_defaults() -> None:
    text = CliRunner().invoke(cli, ["server", "start", "--help"], terminal_width=200).output
    for expected in ("--metrics-address", "127.0.0.1:9464", "STIGMER_METRICS_ADDRESS", "Read-only",
                     "--temporal-metrics-address", "127.0.0.1:9465", "STIGMER_TEMPORAL_METRICS_ADDRESS"):  # fmt: skip
        assert expected in text, expected


def _config(tmp_path: Path, **more: object) -> Config:
    return Config.from_env(
        {},
        address=f"127.0.0.1:{free_port()}",
        temporal_host_port=NOWHERE,
        data_dir=tmp_path / "server",
        grace=0.2,
        queues=TaskQueues.with_suffix(tmp_path.name),
        **more,
    )


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=5) as reply:
        text = reply.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_an_in_process_server_counts_a_refused_create(tmp_path: Path) -> None:
    server = StigmerServer(_config(tmp_path, metrics_address=f"127.0.0.1:{free_port()}"))
    async with server:
        assert server.running is not None and server.running.metrics_endpoint is not None
        url = server.running.metrics_endpoint.url
        metrics = await asyncio.to_thread(scrape, url)
        assert metrics[("stigmer_temporal_connection_state", (("state", "CONNECTED"),))] == 0.0
        assert sum(v for (name, _), v in metrics.items() if name == "stigmer_temporal_connection_state") == 1.0
        assert metrics[("stigmer_executions", (("kind", "agent_execution"), ("phase", "PENDING")))] == 0.0
        async with grpc.aio.insecure_channel(server.config.address) as channel:
            stub = agent_execution_pb2_grpc.AgentExecutionServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.Create(
                    agent_execution_pb2.CreateAgentExecutionRequest(agent="echo", message="hi"), timeout=10
                )
        assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
        create = (("code", "UNAVAILABLE"), ("method", "stigmer.v1.AgentExecutionService/Create"))

        async def counted() -> bool:
            metrics = await asyncio.to_thread(scrape, url)
            return metrics.get(("stigmer_grpc_requests_total", create)) == 1.0

        await eventually(counted, timeout=5, what="the refused create in stigmer_grpc_requests_total")
        metrics = await asyncio.to_thread(scrape, url)
        assert metrics[("stigmer_create_fast_fails_total", (("kind", "agent_execution"),))] == 1.0
        assert metrics[("stigmer_temporal_reconnect_attempts_total", (("outcome", "failure"),))] >= 1.0
        assert metrics[("stigmer_temporal_outage_age_seconds", ())] > 0.0
    with pytest.raises(OSError):  # stopped with the server
        await asyncio.to_thread(scrape, url)


async def test_without_a_metrics_address_nothing_is_measured(tmp_path: Path) -> None:
    async with StigmerServer(_config(tmp_path)) as server:
        assert server.running is not None
        assert server.running.metrics is None and server.running.metrics_endpoint is None


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(message.record["message"]), level="ERROR")
    yield lines
    logger.remove(sink)


async def test_a_taken_metrics_address_is_one_line_and_exit_78(tmp_path: Path, log_lines: list[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        config = _config(tmp_path, metrics_address=address)
        server = StigmerServer(config)
        with pytest.raises(RuntimeError, match="did not start \\(exit 78 CONFIG\\)"):
            async with server:
                pytest.fail("the block must not run")
    assert len(log_lines) == 1 and address in log_lines[0] and "--metrics-address" in log_lines[0], log_lines
    assert is_port_free(int(config.address.rsplit(":", 1)[1]))  # refused before the API's listener opened


def test_the_process_has_one_temporal_runtime_and_a_taken_sdk_address_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(clients, "_process_runtime", None)
    monkeypatch.setattr(clients, "_process_prometheus", None)
    with socket.create_server(("127.0.0.1", 0)) as taken:
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(ConfigError, match="--temporal-metrics-address") as info:
            process_runtime(prometheus=address)
    assert address in str(info.value) and "in use" in str(info.value)
    first = process_runtime()
    assert process_runtime() is first and process_runtime(prometheus=f"127.0.0.1:{free_port()}") is first
