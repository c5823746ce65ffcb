"""Several server addresses (issue 16, "clients fail over"): how an address setting becomes a gRPC
target, which methods gRPC may retry, the TLS name a list needs, and -- against in-process gRPC
servers -- that round_robin spreads the calls, skips a stopped server, and retries only what may be
retried."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner
from grpc_health.v1 import health_pb2

from stigmer.api import (
    agent_execution_pb2,
    agent_execution_pb2_grpc,
    status_pb2,
    status_pb2_grpc,
    workflow_execution_pb2,
    workflow_pb2,
)
from stigmer.cli import cli
from stigmer.client import AsyncClient, ServerUnreachableError
from stigmer.client.target import (
    NOT_RETRIED,
    RETRIED,
    RETRY_POLICY,
    Target,
    channel_options,
    parse_address,
    service_config,
)
from stigmer.errors import ConfigError
from stigmer.security import ClientSecurity, ClientSecurityError
from stigmer.testing.eventually import eventually

pytestmark = pytest.mark.timeout(30)
ID = "aex-01JF8ZQ5W3K7N2C4R6T8V0XBYD"


# ---------------------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("address", "target", "hosts"),
    [
        ("127.0.0.1:7234", "127.0.0.1:7234", ("127.0.0.1",)),
        ("  stigmer.internal:7234 ", "stigmer.internal:7234", ("stigmer.internal",)),  # DNS: every record
        ("[::1]:7234", "[::1]:7234", ("::1",)),
        ("10.0.0.1:7234,10.0.0.2:7235", "ipv4:10.0.0.1:7234,10.0.0.2:7235", ("10.0.0.1", "10.0.0.2")),
        ("127.0.0.1:1, 127.0.0.1:2", "ipv4:127.0.0.1:1,127.0.0.1:2", ("127.0.0.1", "127.0.0.1")),
        ("[::1]:1,[fd00::2]:2", "ipv6:[::1]:1,[fd00::2]:2", ("::1", "fd00::2")),
        ("ipv4:10.0.0.1:1,10.0.0.2:2", "ipv4:10.0.0.1:1,10.0.0.2:2", ("10.0.0.1", "10.0.0.2")),
        ("ipv6:[::1]:1,[::1]:2", "ipv6:[::1]:1,[::1]:2", ("::1", "::1")),
        ("dns:///stigmer.internal:7234", "dns:///stigmer.internal:7234", ("stigmer.internal",)),
        ("dns:stigmer.internal:7234", "dns:stigmer.internal:7234", ("stigmer.internal",)),
        ("unix:/run/stigmer.sock", "unix:/run/stigmer.sock", ("",)),
    ],
)
def test_an_address_becomes_a_grpc_target(address: str, target: str, hosts: tuple[str, ...]) -> None:
    parsed = parse_address(address)
    assert (parsed.grpc_target, parsed.hosts) == (target, hosts)
    assert parsed.address == address.strip()
    assert parsed.several is (len(hosts) > 1)


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("", "is empty"),
        ("127.0.0.1", "must look like HOST:PORT"),
        ("127.0.0.1:", "no valid port"),
        ("127.0.0.1:0", "no valid port"),
        ("127.0.0.1:65536", "no valid port"),
        ("127.0.0.1:http", "no valid port"),
        ("::1:7234", "put an IPv6 address in brackets"),
        ("[::1]7234", "must look like [IPv6]:PORT"),
        ("http://10.0.0.1:7234", "without a scheme or path"),
        (
            "10.0.0.1:7234,stigmer-2.internal:7234",
            "'stigmer-2.internal:7234' in '10.0.0.1:7234,stigmer-2.internal:7234' is a host name",
        ),
        ("localhost:1,localhost:2", "is a host name"),
        ("10.0.0.1:1,,10.0.0.2:2", "has an empty entry"),
        ("10.0.0.1:1,", "has an empty entry"),
        ("10.0.0.1:1,[::1]:2", "mixes IPv4 and IPv6"),
        ("10.0.0.1:1,10.0.0.1:1", "lists 10.0.0.1:1 twice"),
        ("ipv4:[::1]:1", "starts with ipv4: but lists IPv6 addresses"),
        ("ipv6:10.0.0.1:1", "starts with ipv6: but lists IPv4 addresses"),
        ("dns:///a:1,b:2", "a dns: target names one"),
        ("dns://8.8.8.8", "must look like dns:///HOST:PORT"),
    ],
)
def test_a_bad_address_is_refused_naming_the_setting(address: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_address(address)
    assert str(caught.value).startswith("STIGMER_SERVER_ADDRESS / --address")
    assert says in str(caught.value)
    with pytest.raises(ConfigError, match=r"^MY_SETTING"):
        parse_address(address, setting="MY_SETTING")


def test_the_client_refuses_a_bad_address_when_made(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="is a host name"):
        AsyncClient(address="10.0.0.1:1,nowhere:2")
    monkeypatch.setenv("STIGMER_SERVER_ADDRESS", "10.0.0.1:1,10.0.0.2:2")
    assert AsyncClient().address == "10.0.0.1:1,10.0.0.2:2"
    monkeypatch.setenv("STIGMER_SERVER_ADDRESS", "10.0.0.1:1;10.0.0.2:2")
    with pytest.raises(ConfigError, match="STIGMER_SERVER_ADDRESS"):
        AsyncClient()


@pytest.mark.parametrize("how", ["flag", "env"])
def test_the_cli_refuses_a_bad_address_as_a_usage_error(how: str) -> None:
    bad = "10.0.0.1:1,stigmer-2:7234"
    args, env = (["--address", bad], {}) if how == "flag" else ([], {"STIGMER_SERVER_ADDRESS": bad})
    result = CliRunner().invoke(cli, ["server", "status", *args], env=env, prog_name="stigmer")
    assert result.exit_code == 2, result.output
    assert "--address / STIGMER_SERVER_ADDRESS: 'stigmer-2:7234'" in result.output
    assert "Traceback" not in result.output


# ---------------------------------------------------------------------------------------- TLS


def test_tls_with_a_list_checks_one_name() -> None:
    tls = ClientSecurity(tls=True)
    one = parse_address("10.0.0.1:7234")
    assert one.secured(tls) is tls  # one server: its host, as always
    same_host = parse_address("10.0.0.1:7234,10.0.0.1:7235")
    assert same_host.secured(tls).server_name == "10.0.0.1"
    named = ClientSecurity(tls=True, server_name="stigmer.internal")
    two_hosts = parse_address("10.0.0.1:7234,10.0.0.2:7234")
    assert two_hosts.secured(named) is named
    assert two_hosts.secured(ClientSecurity()).server_name is None  # plaintext: no name needed
    with pytest.raises(ClientSecurityError, match=r"STIGMER_TLS_SERVER_NAME is needed .*\(10\.0\.0\.1, 10\.0\.0\.2\)"):
        two_hosts.secured(tls)


async def test_the_cli_names_the_missing_tls_server_name(tmp_path: Path) -> None:
    env = {"STIGMER_TLS": "1", "STIGMER_TLS_SERVER_NAME": ""}
    result = CliRunner().invoke(
        cli, ["agent-execution", "get", ID, "--address", "127.0.0.1:1,127.0.0.2:1"], env=env, prog_name="stigmer"
    )
    assert result.exit_code == 2, result.output
    assert "STIGMER_TLS_SERVER_NAME is needed with TLS and several servers" in result.output


# ---------------------------------------------------------------------------------------- service config


def _methods() -> set[tuple[str, str]]:
    found = {("grpc.health.v1.Health", m.name) for m in health_pb2.DESCRIPTOR.services_by_name["Health"].methods}
    for module in (agent_execution_pb2, workflow_pb2, workflow_execution_pb2, status_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            found |= {(service.full_name, method.name) for method in service.methods}
    return found


def _flat(table: dict[str, tuple[str, ...]]) -> set[tuple[str, str]]:
    return {(service, method) for service, methods in table.items() for method in methods}


def test_every_rpc_is_decided_retried_or_not_and_no_delete_is_retried() -> None:
    retried, not_retried = _flat(RETRIED), _flat(NOT_RETRIED)
    assert not retried & not_retried
    assert retried | not_retried == _methods()  # a new RPC must be put in one of them
    assert {m for _, m in not_retried} == {"Delete"} and not {m for _, m in retried} & {"Delete"}


def test_the_service_config_is_round_robin_with_bounded_retries_of_unavailable() -> None:
    config = service_config()
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    (method_config,) = config["methodConfig"]
    assert {(n["service"], n["method"]) for n in method_config["name"]} == _flat(RETRIED)
    assert method_config["retryPolicy"] is RETRY_POLICY
    assert RETRY_POLICY["retryableStatusCodes"] == ["UNAVAILABLE"] and RETRY_POLICY["maxAttempts"] == 3
    assert config["retryThrottling"] == {"maxTokens": 10, "tokenRatio": 0.1}
    options = dict(channel_options())
    assert json.loads(options["grpc.service_config"]) == config
    assert options["grpc.enable_retries"] == 1 and options["grpc.service_config_disable_resolution"] == 1
    assert dict(channel_options(retries=False))["grpc.enable_retries"] == 0


# ---------------------------------------------------------------------------------------- real channels


class Status(status_pb2_grpc.StatusServiceServicer):
    """GetStatus names the server that answered (in temporal_address)."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def GetStatus(self, request: status_pb2.GetStatusRequest, context: Any) -> status_pb2.ServerStatus:
        return status_pb2.ServerStatus(state="CONNECTED", temporal_address=self.name)


class Lost(agent_execution_pb2_grpc.AgentExecutionServiceServicer):
    """Get and Delete answer a bare UNAVAILABLE (what a lost connection looks like); counts each."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def Get(self, request: Any, context: Any) -> agent_execution_pb2.AgentExecution:
        self.calls.append("Get")
        await context.abort(grpc.StatusCode.UNAVAILABLE, "connection lost")
        raise AssertionError("abort returns only by raising")

    async def Delete(self, request: Any, context: Any) -> agent_execution_pb2.AgentExecution:
        self.calls.append("Delete")
        await context.abort(grpc.StatusCode.UNAVAILABLE, "connection lost")
        raise AssertionError("abort returns only by raising")


@pytest.fixture
async def servers() -> AsyncIterator[list[tuple[grpc.aio.Server, str, Lost]]]:
    made = []
    for name in ("one", "two"):
        server = grpc.aio.server()
        lost = Lost()
        status_pb2_grpc.add_StatusServiceServicer_to_server(Status(name), server)
        agent_execution_pb2_grpc.add_AgentExecutionServiceServicer_to_server(lost, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        made.append((server, f"127.0.0.1:{port}", lost))
    try:
        yield made
    finally:
        for server, _, _ in made:
            await server.stop(grace=None)


async def _answerers(client: AsyncClient, calls: int) -> list[str]:
    return [(await client.status()).temporal_address for _ in range(calls)]


async def _both_answer(client: AsyncClient) -> bool:
    return set(await _answerers(client, 4)) == {"one", "two"}


async def test_calls_go_round_robin_and_a_stopped_server_is_skipped(servers) -> None:
    address = ",".join(a for _, a, _ in servers)
    async with AsyncClient(address=address, token="", timeout=5) as client:
        await eventually(lambda: _both_answer(client), timeout=10, what="both servers to answer")
        seen = await _answerers(client, 10)
        assert seen.count("one") == seen.count("two") == 5, seen  # each READY server in turn
        await servers[0][0].stop(grace=None)
        assert await _answerers(client, 10) == ["two"] * 10  # not one call failed
        await servers[1][0].stop(grace=None)
        with pytest.raises(ServerUnreachableError) as caught:
            await client.status()
        assert caught.value.address == address and address in str(caught.value)


async def test_gets_are_retried_on_unavailable_and_deletes_are_not(servers) -> None:
    address = ",".join(a for _, a, _ in servers)
    async with AsyncClient(address=address, token="", timeout=5) as client:
        await eventually(lambda: _both_answer(client), timeout=10, what="both servers to answer")
        with pytest.raises(ServerUnreachableError):
            await client.get_agent_execution(ID)
        assert sum(lost.calls.count("Get") for _, _, lost in servers) == 3  # on both servers, in turn
        assert all(lost.calls for _, _, lost in servers)
        with pytest.raises(ServerUnreachableError):
            await client.delete_agent_execution(ID)
        assert sum(lost.calls.count("Delete") for _, _, lost in servers) == 1


def test_a_target_is_a_frozen_value() -> None:
    target = Target("a", "b", ("c",))
    with pytest.raises(AttributeError):
        target.address = "x"  # type: ignore[misc]
