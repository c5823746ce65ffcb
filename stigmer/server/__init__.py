"""The gRPC layer: servicers over the controllers, grpc.health.v1 and the status RPC.

``build_server`` assembles everything on one address; startup order and graceful shutdown
(health NOT_SERVING first, then ``server.stop(grace)``) belong to the caller.
"""

from stigmer.server.errors import INTERNAL_MESSAGE, RETRY_AFTER_KEY, STATE_KEY, grpc_errors
from stigmer.server.grpc_server import MAX_RECEIVE_MESSAGE_BYTES, BoundServer, ListenError, Services, build_server
from stigmer.server.health import DATABASE_SERVICE, OVERALL, TEMPORAL_SERVICE, ServerHealth
from stigmer.server.status import StatusProvider, StatusServicer

__all__ = [
    "DATABASE_SERVICE",
    "INTERNAL_MESSAGE",
    "MAX_RECEIVE_MESSAGE_BYTES",
    "OVERALL",
    "RETRY_AFTER_KEY",
    "STATE_KEY",
    "TEMPORAL_SERVICE",
    "BoundServer",
    "ListenError",
    "ServerHealth",
    "Services",
    "StatusProvider",
    "StatusServicer",
    "build_server",
    "grpc_errors",
]
