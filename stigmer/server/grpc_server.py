"""Build the grpc.aio server: every stigmer.v1 servicer plus grpc.health.v1, bound to one address.

No reflection service: the API is described by the committed .proto files.

Message size. The largest legitimate request is an agent message of 1 MiB (the controllers'
limit, checked on the UTF-8 byte length) or a workflow document of 1 MiB, plus a little framing
and runtime env. The receive limit is 4 MiB so that a request somewhat over those limits still
*reaches the controller* and gets INVALID_ARGUMENT naming the field ("message: ..."), which a
user can act on, rather than a transport-level RESOURCE_EXHAUSTED; anything beyond 4 MiB is
refused by gRPC before it is buffered, which bounds the memory one call can take. (4 MiB is
also gRPC's default; it is set explicitly because the controllers' limits depend on it.) Sending
is left unlimited: a response can legitimately carry a 1 MiB message plus the agent's replies.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2_grpc
from loguru import logger

from stigmer.api import (
    agent_execution_pb2_grpc,
    status_pb2_grpc,
    workflow_execution_pb2_grpc,
    workflow_pb2_grpc,
)
from stigmer.controllers import AgentExecutionController, WorkflowController, WorkflowExecutionController
from stigmer.errors import StigmerError
from stigmer.server.health import ServerHealth
from stigmer.server.servicers import AgentExecutionServicer, WorkflowExecutionServicer, WorkflowServicer
from stigmer.server.status import StatusProvider, StatusServicer

MAX_RECEIVE_MESSAGE_BYTES = 4 * 1024 * 1024


class ListenError(StigmerError):
    """The server's own listener could not be opened; the message names the address and why."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(
            f"cannot listen on {address}: {reason} "
            "(is another stigmer server running? choose another address with STIGMER_SERVER_ADDRESS)"
        )
        self.address = address
        self.reason = reason


@dataclass(frozen=True, kw_only=True)
class Services:
    """What the servicers call; narrow, typed collaborators instead of a god object."""

    #: None for a worker process (--role worker): it serves only status and health.
    agent_executions: AgentExecutionController | None
    workflows: WorkflowController | None
    workflow_executions: WorkflowExecutionController | None
    status: StatusProvider
    health: ServerHealth


@dataclass(frozen=True, kw_only=True)
class BoundServer:
    server: grpc.aio.Server
    #: The address actually bound (port 0 resolved to the port the kernel chose).
    address: str
    port: int


def build_server(
    services: Services,
    *,
    address: str,
    max_receive_message_bytes: int = MAX_RECEIVE_MESSAGE_BYTES,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    credentials: grpc.ServerCredentials | None = None,
    metrics: grpc.aio.ServerInterceptor | None = None,
) -> BoundServer:
    """A grpc.aio.Server with every servicer, bound to ``address`` but not started.

    Must be called on the loop that will run it. Raises ListenError (after logging the
    contract line) when the address cannot be bound. ``interceptors`` (the token check) run
    before every servicer; ``credentials`` make the listener TLS-only. ``metrics``
    (stigmer.metrics.GrpcMetrics) goes outermost, so it sees every call's final code, the
    token check's refusals included.
    """
    server = grpc.aio.server(
        interceptors=[*([metrics] if metrics is not None else []), *interceptors],
        options=[
            ("grpc.max_receive_message_length", max_receive_message_bytes),
            ("grpc.max_send_message_length", -1),
            # grpc sets SO_REUSEPORT by default, so a second server on the same port would bind
            # *successfully* and share the traffic. Refuse that: one address, one server.
            ("grpc.so_reuseport", 0),
        ],
    )
    if services.agent_executions is not None:
        agent_execution_pb2_grpc.add_AgentExecutionServiceServicer_to_server(
            AgentExecutionServicer(services.agent_executions), server
        )
    if services.workflows is not None:
        workflow_pb2_grpc.add_WorkflowServiceServicer_to_server(WorkflowServicer(services.workflows), server)
    if services.workflow_executions is not None:
        workflow_execution_pb2_grpc.add_WorkflowExecutionServiceServicer_to_server(
            WorkflowExecutionServicer(services.workflow_executions), server
        )
    status_pb2_grpc.add_StatusServiceServicer_to_server(StatusServicer(services.status), server)
    health_pb2_grpc.add_HealthServicer_to_server(services.health.servicer, server)
    try:
        if credentials is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, credentials)
    except RuntimeError:
        port = 0
    if port == 0:
        reason = diagnose_bind(address)
        logger.error("Failed to create grpc connection", address=address, error=reason)
        raise ListenError(address, reason)
    host = address.rsplit(":", 1)[0]
    return BoundServer(server=server, address=f"{host}:{port}", port=port)


def diagnose_bind(address: str) -> str:
    """Why ``address`` cannot be bound, in words (grpc's own error only says that it failed)."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        return "not a valid host:port address"
    host = host.strip("[]") or "0.0.0.0"
    try:
        infos = socket.getaddrinfo(host, int(port_text), type=socket.SOCK_STREAM)
    except OSError as err:
        return f"cannot resolve host {host!r} ({err})"
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        # SO_REUSEADDR as servers use it, so that only a live listener counts as "in use".
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError as err:
            return err.strerror or str(err)
    return "gRPC refused to bind it (set GRPC_VERBOSITY=debug for details)"
