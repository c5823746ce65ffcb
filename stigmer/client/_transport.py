"""The transport under :class:`stigmer.client.AsyncClient`: one channel, the two call shapes (unary
with the opt-in retry, server stream), paging, and what a call says about itself (request ids, who
asks).
"""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Self, TypeVar

import grpc
from google.protobuf.message import Message as ProtoMessage

from stigmer.client import _errors
from stigmer.client.models import Page
from stigmer.client.target import channel_options, parse_address
from stigmer.config import DEFAULT_ADDRESS
from stigmer.contract import RETRY_AFTER_KEY
from stigmer.errors import DatabaseUnavailableError, StigmerError, TemporalUnavailableError
from stigmer.security import ClientSecurity, Secret

ADDRESS_ENV = "STIGMER_SERVER_ADDRESS"
T = TypeVar("T")


class Transport:
    """A connection to one stigmer server, or to any of several (stigmer.client.target), and the
    shapes of its calls (AsyncClient's base).

    ``timeout`` arguments are gRPC deadlines callers pass per call, not waits (hence the noqa).
    """

    def __init__(
        self,
        *,
        address: str | None = None,
        token: str | None = None,
        security: ClientSecurity | None = None,
        timeout: float = 30.0,
        retry_unavailable: float = 0.0,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.address = address or os.environ.get(ADDRESS_ENV, "").strip() or DEFAULT_ADDRESS
        self._target = parse_address(self.address)  # ConfigError naming the setting
        security = security or ClientSecurity.from_env()
        if token is not None:  # "" sends none
            security = dataclasses.replace(security, token=Secret(token) if token else None)
        self._security = security
        self.timeout = timeout
        self.retry_unavailable = retry_unavailable
        self._metadata = security.metadata() or None
        #: By "retries on": a create without a request_id goes on a channel of its own without them.
        self._channels: dict[bool, grpc.aio.Channel] = {}
        self._unaries: dict[tuple[str, bool], grpc.aio.UnaryUnaryMultiCallable[Any, Any]] = {}
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel; safe twice."""
        self._closed = True
        channels = list(self._channels.values())
        self._channels.clear()
        self._unaries.clear()
        for channel in channels:
            await channel.close()

    def _open(self, *, retries: bool = True) -> grpc.aio.Channel:
        if self._closed:
            raise RuntimeError("the client is closed")
        channel = self._channels.get(retries)
        if channel is None:
            security = self._target.secured(self._security)  # ClientSecurityError: TLS needs a name
            channel = self._channels[retries] = security.aio_channel(
                self._target.grpc_target, options=channel_options(retries=retries)
            )
        return channel

    # -- the two call shapes ---------------------------------------------------------------

    def _error(self, error: grpc.RpcError) -> StigmerError:
        return _errors.from_rpc(error, address=self.address, tls=self._security.tls)

    async def _unary(
        self,
        method: str,
        request: ProtoMessage,
        reply: type[T],
        timeout: float | None,  # noqa: ASYNC109
        *,
        retries: bool = True,
    ) -> T:
        """One unary call; ``retries=False`` (a create without a request_id) also turns off gRPC's."""
        call = self._unaries.get((method, retries))
        if call is None:  # one multicallable per method and channel: making one per call costs CPU
            call = self._unaries[method, retries] = self._open(retries=retries).unary_unary(
                method,
                request_serializer=type(request).SerializeToString,
                response_deserializer=reply.FromString,  # type: ignore[attr-defined]
            )
        budget = time.monotonic() + self.retry_unavailable
        while True:
            try:
                result: T = await call(request, timeout=timeout or self.timeout, metadata=self._metadata)
                return result
            except grpc.RpcError as rpc_error:
                error = self._error(rpc_error)
            # The server refused for now (Temporal or its database away): nothing was done, and a
            # create resends the same request id, so a retry cannot duplicate anything.
            wait = _retry_after(error)
            if wait is None or time.monotonic() + wait > budget:
                raise error from None
            await asyncio.sleep(wait)

    async def _stream(
        self,
        method: str,
        request: ProtoMessage,
        reply: type[T],
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> AsyncIterator[T]:
        """A server stream (``timeout``: for all of it, none by default); a broken one raises
        (ServerUnreachableError, ...) rather than just ending."""
        call = self._open().unary_stream(
            method,
            request_serializer=type(request).SerializeToString,
            response_deserializer=reply.FromString,  # type: ignore[attr-defined]
        )
        stream = call(request, timeout=timeout, metadata=self._metadata)
        try:
            async for item in stream:
                yield item
        except grpc.RpcError as rpc_error:
            raise self._error(rpc_error) from None
        finally:
            stream.cancel()

    async def _pages(self, fetch: Callable[[str], Any]) -> AsyncIterator[Any]:
        token = ""
        while True:
            page: Page = await fetch(token)
            for item in page.items:
                yield item
            token = page.next_page_token
            if not token:
                return


def fill_request_id(given: str | None) -> str:
    """The request_id of one create: the caller's (``""``: none), else a fresh UUID. Made once per
    call, before its request: the call's own retries resend that same request, hence the same id."""
    return str(uuid.uuid4()) if given is None else given


def requester(given: str | None) -> str:
    """Who asks for a cancel: the caller's text, else ``user@host`` (within the server's 256 bytes)."""
    if given is not None:
        return given
    try:
        user = getpass.getuser()
    except (KeyError, OSError, ImportError):  # no USER/LOGNAME and no passwd entry (a container's uid)
        user = ""
    try:
        host = socket.gethostname()
    except OSError:
        host = ""
    return f"{user or 'unknown'}@{host or 'localhost'}".encode()[:256].decode(errors="ignore")


def _retry_after(error: StigmerError) -> float | None:
    """Seconds to wait before retrying a refusal worth retrying; None for any other error."""
    if isinstance(error, TemporalUnavailableError):
        return error.retry_after
    if isinstance(error, DatabaseUnavailableError):
        return float((error.trailing or {}).get(RETRY_AFTER_KEY, "1") or 1)
    return None
