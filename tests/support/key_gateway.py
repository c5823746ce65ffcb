"""An API-key-checking TLS gateway in front of the dev server: what Temporal Cloud looks like.

`temporal server start-dev` checks no API keys, and the TLS proxy (tests/support/tls_proxy.py)
sees only bytes. This is a gRPC server (TLS on 127.0.0.1) that answers every call whose
``authorization`` header is not ``Bearer <api_key>`` with UNAUTHENTICATED -- as a gateway that
authenticates does -- and forwards the others, unchanged bytes, to the target. Temporal's client
API is unary calls only (long polls included), so unary forwarding is all it needs.
"""

from __future__ import annotations

from concurrent import futures
from pathlib import Path
from typing import Any

import grpc

from stigmer.testing.ports import free_port

_HOP_BY_HOP = frozenset({"authorization"})


class ApiKeyGateway:
    def __init__(self, *, target: str, cert: Path, key: Path, api_key: str) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.refused = 0
        self._expected = f"Bearer {api_key}"
        self._upstream = grpc.insecure_channel(target)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="key-gateway"))
        self._server.add_generic_rpc_handlers([_Forward(self)])
        credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
        self._server.add_secure_port(self.address, credentials)

    def start(self) -> ApiKeyGateway:
        self._server.start()
        return self

    def close(self) -> None:
        self._server.stop(grace=None).wait(timeout=5)
        self._upstream.close()

    def _call(self, method: str, request: bytes, context: grpc.ServicerContext) -> bytes:
        metadata = tuple(context.invocation_metadata())
        if dict(metadata).get("authorization") != self._expected:
            self.refused += 1
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid API key")
        remaining = context.time_remaining()
        forward = self._upstream.unary_unary(method)
        try:
            reply: bytes = forward(
                request,
                timeout=min(remaining, 120.0) if remaining else 30.0,
                metadata=[(k, v) for k, v in metadata if k not in _HOP_BY_HOP],
            )
        except grpc.RpcError as err:
            context.abort(err.code(), err.details() or "")  # type: ignore[attr-defined]
        return reply


class _Forward(grpc.GenericRpcHandler):
    def __init__(self, gateway: ApiKeyGateway) -> None:
        self._gateway = gateway

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        method = handler_call_details.method  # type: ignore[attr-defined]

        def behaviour(request: bytes, context: grpc.ServicerContext) -> bytes:
            return self._gateway._call(method, request, context)

        return grpc.unary_unary_rpc_method_handler(behaviour)
