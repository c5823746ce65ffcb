"""``/metrics`` over HTTP: prometheus_client's own server (a thread), on one server's registry."""

from __future__ import annotations

import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from stigmer.errors import ConfigError


class MetricsListenError(ConfigError):
    """The metrics address cannot be listened on; the message names it, why, and the flag."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(
            f"cannot serve metrics on {address}: {reason} (choose another address with --metrics-address / "
            "STIGMER_METRICS_ADDRESS, or `none` to serve no metrics)"
        )
        self.address = address


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9464`` for IPv6) -> (host, port); ValueError if it is not one."""
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"not a HOST:PORT address: {address!r}")
    return host.strip("[]"), int(port)


class MetricsEndpoint:
    """``start()`` binds and serves in a daemon thread; ``stop()`` closes the socket (idempotent)."""

    def __init__(self, address: str, registry: CollectorRegistry) -> None:
        self.address = address
        self._registry = registry
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port bound (the one asked for, or the kernel's choice for port 0)."""
        if self._server is None:
            raise RuntimeError("MetricsEndpoint is not serving")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = split_address(self.address)[0]
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/metrics"

    def start(self) -> None:
        """Raises MetricsListenError when the address is taken or cannot be bound."""
        if self._server is not None:
            raise RuntimeError("MetricsEndpoint.start() called twice")
        try:
            host, port = split_address(self.address)
            self._server, self._thread = start_http_server(port, addr=host, registry=self._registry)
        except ValueError as err:
            raise MetricsListenError(self.address, str(err)) from err
        except OSError as err:
            raise MetricsListenError(self.address, err.strerror or str(err)) from err

    def stop(self) -> None:
        server, self._server = self._server, None
        thread, self._thread = self._thread, None
        if server is None:
            return
        server.shutdown()  # ends serve_forever (polls every 0.5 s)
        server.server_close()
        if thread is not None:
            thread.join(timeout=2.0)
