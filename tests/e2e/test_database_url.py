"""`server start --database-url`: bad settings are one line and exit 78; PostgreSQL down at start
is served through (the API answers, the database health says so) and picked up when it comes."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2

from stigmer.errors import ExitCode
from stigmer.testing.eventually import wait_until
from stigmer.testing.ports import free_port
from stigmer.testing.postgres import PostgresServer
from stigmer.testing.server import stigmer_binary, wait_for_log

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(120)]


def start(tmp_path: Path, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            stigmer_binary(),
            "server",
            "start",
            "--data-dir",
            str(tmp_path / "data"),
            "--address",
            f"127.0.0.1:{free_port()}",
            "--temporal-host-port",
            f"127.0.0.1:{free_port()}",
            "--database-url",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_bad_database_settings_exit_78_with_one_line(stigmer_postgres: PostgresServer, tmp_path: Path) -> None:
    owner = f"owner_{uuid.uuid4().hex[:8]}"
    stigmer_postgres.create_role(owner, password="right-pw")
    database = stigmer_postgres.create_database(owner=owner)
    cases = {
        "mysql://root@127.0.0.1/stigmer": "unknown scheme 'mysql'",
        "postgresql://stigmer@127.0.0.1:99999/x": "malformed",
        database.url_for(user=owner, password="wrong-pw"): "refused the credentials",
        stigmer_postgres.url_for(f"missing_{uuid.uuid4().hex[:6]}"): "does not exist",
    }
    for url, text in cases.items():
        result = start(tmp_path, url)
        assert result.returncode == ExitCode.CONFIG, (url, result.stdout, result.stderr)
        lines = [line for line in result.stderr.splitlines() if "Cannot open the data store" in line]
        assert len(lines) == 1 and text in lines[0], result.stderr
        assert "Traceback" not in result.stderr and "wrong-pw" not in result.stderr


def test_postgresql_down_at_start_is_served_through(owned_postgres: PostgresServer, stigmer_server_factory) -> None:
    owned_postgres.stop()
    server = stigmer_server_factory(temporal=f"127.0.0.1:{free_port()}", extra=["--database-url", owned_postgres.url])
    wait_for_log(server, "PostgreSQL is not reachable yet")
    listing = server.cli("agent-execution", "list")
    assert listing.code == ExitCode.TEMPFAIL and "database unavailable" in listing.text, listing.text
    assert _database_health(server.address) == health_pb2.HealthCheckResponse.NOT_SERVING
    owned_postgres.restart()
    wait_for_log(server, "is available", timeout=20)
    wait_until(
        lambda: _database_health(server.address) == health_pb2.HealthCheckResponse.SERVING,
        timeout=10,
        what="stigmer.database SERVING",
    )
    assert server.cli("agent-execution", "list").code == 0


def _database_health(address: str) -> int:
    import grpc
    from grpc_health.v1 import health_pb2_grpc

    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="stigmer.database"), timeout=5
        )
    return int(reply.status)
