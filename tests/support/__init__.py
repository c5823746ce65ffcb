"""Shared helpers for integration and e2e tests: polling, ports, a real Temporal dev server,
and a TCP proxy that can cut connections."""

from tests.support.eventually import eventually, wait_until
from tests.support.ports import free_port, is_port_free
from tests.support.tcp_proxy import ProxyMode, TcpProxy
from tests.support.temporal_server import TemporalDevServer, TemporalExitedError, TemporalNotFoundError

__all__ = [
    "ProxyMode",
    "TcpProxy",
    "TemporalDevServer",
    "TemporalExitedError",
    "TemporalNotFoundError",
    "eventually",
    "free_port",
    "is_port_free",
    "wait_until",
]
