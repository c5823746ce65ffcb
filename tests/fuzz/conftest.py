"""The fuzz package's marker, its one shared server per module (see harness.py) and the module's model of
request ids."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stigmer.testing.temporal import TemporalDevServer
from tests.fuzz.harness import Api, RequestIds


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fuzz: property-based hostile-input tests (bounded and derandomized; run in CI with the rest)"
    )


@pytest.fixture(scope="module")
def api(temporal: TemporalDevServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One real server stack (gRPC, controllers, SQLite store, Temporal workers) per fuzz module."""
    with Api(temporal_address=temporal.address, data_dir=tmp_path_factory.mktemp("fuzz") / "data") as served:
        yield served


@pytest.fixture(scope="module")
def request_ids() -> dict[str, RequestIds]:
    """The module's model of request ids used so far, per kind ("aex", "wex"): one store per module."""
    return {"aex": RequestIds(), "wex": RequestIds()}
