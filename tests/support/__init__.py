"""Test-only helpers for integration and e2e tests: a TCP proxy that can cut connections, a TLS
proxy, test certificates and a key gateway. The real-process helpers (dev servers, the stigmer
server process, free ports, polling) ship in stigmer.testing, with the pytest plugin."""

from tests.support.tcp_proxy import ProxyMode, TcpProxy

__all__ = ["ProxyMode", "TcpProxy"]
