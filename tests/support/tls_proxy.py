"""A TLS-terminating TCP proxy: TLS (optionally mTLS) on 127.0.0.1 outside, plaintext to a target.

`temporal server start-dev` has no TLS options; put this in front of it and a client must speak
TLS, trust our CA and (with ``require_client_cert``) present a certificate that CA signed, or it
gets nowhere. It counts the handshakes that completed, so a test can tell TLS was really used.
Runs its own event loop in a thread, so sync and async tests can use it alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from pathlib import Path
from typing import Any

from stigmer.testing.ports import free_port


class TlsProxy:
    def __init__(self, *, target: str, cert: Path, key: Path, client_ca: Path | None = None) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._target_host, _, port = target.rpartition(":")
        self._target_port = int(port)
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert, key)
        self._context.set_alpn_protocols(["h2"])  # gRPC clients (tonic/rustls) ask for HTTP/2
        if client_ca is not None:
            self._context.verify_mode = ssl.CERT_REQUIRED
            self._context.load_verify_locations(client_ca)
        self.handshakes = 0
        self.client_certs = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tls-proxy", daemon=True)

    def start(self) -> TlsProxy:
        self._loop.set_exception_handler(_quiet)
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(timeout=10)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, ssl=self._context, ssl_handshake_timeout=5
        )

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.handshakes += 1
        if writer.get_extra_info("peercert"):
            self.client_certs += 1
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(self._target_host, self._target_port), timeout=5
            )
        except (OSError, TimeoutError):
            writer.close()
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._writers.difference_update((writer, up_writer))

    def close(self) -> None:
        if not self._thread.is_alive():
            return

        async def stop() -> None:
            if self._server is not None:
                self._server.close()
                # Cut open connections too (wait_closed waits for them on newer Pythons).
                for writer in list(self._writers):
                    writer.close()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._server.wait_closed(), timeout=5)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
        pass
    finally:
        writer.close()


def _quiet(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # Failed handshakes (a TCP liveness probe, a client without the right certificate) are
    # expected here; asyncio would print each one with a traceback.
    return None
