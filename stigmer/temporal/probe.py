"""TemporalProbe: "does Temporal answer?", asked in gRPC, on a channel of its own.

One ``grpc.health.v1.Health/Check`` for the frontend's WorkflowService, over the same address
and credentials the SDK client uses (TLS, mTLS, server name, API key, extra headers). It answers
two questions for the connection's loops (statemachine.Supervisor):

- while CONNECTED, *is it still there?* -- a probe every 0.5 s. A killed Temporal resets the
  connection and the probe fails at once; a dead path (a black hole, a proxy holding the
  connection) is caught by this channel's own HTTP/2 keepalive within about 1.5 s (a ping after
  0.5 s without a byte while a probe is in flight, 1 s to answer); a Temporal that is slow but
  alive answers pings at the transport level, so only a probe slower than its generous deadline
  counts against it;
- while not CONNECTED, *is it back?* -- a TCP accept proves nothing behind a load balancer, an
  answered RPC does.

Why a channel of its own: the SDK clients' connections carry the workers' long polls, which must
keep the SDK's keepalive (30 s): the Temporal frontend enforces a minimum ping interval of 10 s
(``frontend.keepAliveMinTime``) and closes a connection that pings faster with GOAWAY
``too_many_pings`` -- losing the workflow task in flight on it for the 10 s task timeout. This
channel pings only while a probe is in flight (``keepalive_permit_without_calls`` off) and at
most twice without sending data (``max_pings_without_data``), and the frontend writes a reply
between two probes, which clears its ping strikes: it never collects the three strikes that
draw a GOAWAY.

After any failure the channel is dropped and the next probe dials afresh: a grpc channel would
otherwise sit in its reconnect backoff (1 s, growing) or keep a connection a holding proxy has
black-holed, and see a comeback late.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import time
from collections.abc import Awaitable, Callable, Sequence

import grpc
from grpc_health.v1 import health_pb2

from stigmer.temporal.tls import TemporalSecurity, read_pem
from stigmer.temporal.wire import Refused, is_ip, replies_to_hello, split_host_port

#: The frontend registers its health status under the workflow service's full name.
FRONTEND_SERVICE = "temporal.api.workflowservice.v1.WorkflowService"
CHECK_METHOD = "/grpc.health.v1.Health/Check"
_Check = grpc.aio.UnaryUnaryMultiCallable[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]
#: The two probes as TemporalConnection.observe_probes() names them.
LIVENESS, COMEBACK = "liveness", "comeback"

#: Codes that only a gRPC server that received the call can give: Temporal (or a gateway in
#: front of it that speaks gRPC) answered. Credentials refused still means "it is up": the real
#: attempt that follows says what is wrong.
_ANSWERED = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)

_CHANNEL_OPTIONS: Sequence[tuple[str, int]] = (
    ("grpc.keepalive_time_ms", 500),
    ("grpc.keepalive_timeout_ms", 1000),
    # grpc core also bounds a ping's wait for its ack by this (default 1 min), not by the above.
    ("grpc.http2.ping_timeout_ms", 1000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 2),
    ("grpc.enable_retries", 0),
    # Its own connection: grpc core otherwise shares subchannels between channels of the same
    # target and arguments, so a "fresh" channel could reuse a held or backing-off connection.
    ("grpc.use_local_subchannel_pool", 1),
    # One dial per channel: a failed channel is dropped anyway (a fresh one per failure avoids any
    # backoff). A shorter backoff made grpc core redial within one probe's deadline when a proxy
    # held the handshake: two connections per probe (measured).
    ("grpc.initial_reconnect_backoff_ms", 2000),
    ("grpc.min_reconnect_backoff_ms", 2000),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


class TemporalProbe:
    """Asks Temporal's frontend for its health; see the module docstring. ``close()`` is idempotent."""

    def __init__(self, host_port: str, *, security: TemporalSecurity | None = None, namespace: str = "default") -> None:
        self.host_port = host_port
        self._security = security or TemporalSecurity()
        self._namespace = namespace
        self._channel: grpc.aio.Channel | None = None
        self._check: _Check | None = None
        #: Called with each question's result, True when Temporal answered (the metrics' probe counter).
        self.on_result: Callable[[bool], None] | None = None

    async def answers(self, timeout: float) -> str | None:  # noqa: ASYNC109 -- a gRPC deadline, not a wait
        """None when Temporal answered within ``timeout`` s, else the reason in words."""
        try:
            reason = await self._answers(timeout)
        except Exception:
            if self.on_result is not None:
                self.on_result(False)
            raise
        if self.on_result is not None:
            self.on_result(reason is None)
        return reason

    async def _answers(self, timeout: float) -> str | None:  # noqa: ASYNC109
        check = self._check or self._open()
        request = health_pb2.HealthCheckRequest(service=FRONTEND_SERVICE)
        try:
            reply = await check(request, timeout=timeout, metadata=self._metadata())
        except grpc.aio.AioRpcError as err:
            if err.code() in _ANSWERED:
                return None
            await self._drop()
            return _reason(err, self.host_port)
        if reply.status == health_pb2.HealthCheckResponse.SERVING:
            return None
        await self._drop()
        return f"Temporal at {self.host_port} reports {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"

    async def close(self) -> None:
        await self._drop()

    def _open(self) -> _Check:
        security = self._security
        options = list(_CHANNEL_OPTIONS)
        if security.uses_tls:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=read_pem(security.server_ca),
                private_key=read_pem(security.client_key),
                certificate_chain=read_pem(security.client_cert),
            )
            if security.server_name:
                options.append(("grpc.ssl_target_name_override", security.server_name))  # type: ignore[arg-type]
            self._channel = grpc.aio.secure_channel(_target(self.host_port), credentials, options=options)
        else:
            self._channel = grpc.aio.insecure_channel(_target(self.host_port), options=options)
        # The method itself rather than health_pb2_grpc.HealthStub, whose stubs leave Check out.
        self._check = self._channel.unary_unary(
            CHECK_METHOD,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        return self._check

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        security = self._security
        pairs = [(key.lower(), value) for key, value in security.rpc_metadata.items()]
        if security.api_key is not None:
            pairs += [("authorization", f"Bearer {security.api_key.reveal()}"), ("temporal-namespace", self._namespace)]
        return tuple(pairs)

    async def _drop(self) -> None:
        channel, self._channel, self._check = self._channel, None, None
        if channel is not None:
            with contextlib.suppress(Exception):
                await channel.close()


def _target(host_port: str) -> str:
    """An IP address needs no resolver: ``ipv4:``/``ipv6:`` skip grpc's DNS step (a quarter of a
    fresh probe's CPU, measured); a name is resolved afresh by each probe, as it should be."""
    host, _ = split_host_port(host_port)
    return f"ipv{ipaddress.ip_address(host).version}:{host_port}" if is_ip(host) else host_port


def _reason(err: grpc.aio.AioRpcError, host_port: str) -> str:
    code = err.code()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return f"no answer from {host_port} in time (is the address right, or the network path dead?)"
    details = (err.details() or "").splitlines()[0][:200] if err.details() else ""
    if "ping timeout" in details.lower() or "keepalive" in details.lower():
        return f"no answer from {host_port}: the connection went silent ({details})"
    if "connection refused" in details.lower():
        return f"{REFUSED} {host_port} (is Temporal running?)"
    return f"{code.name} from {host_port}: {details}" if details else f"{code.name} from {host_port}"


#: How a reason for a refused connection begins (ComebackProbe goes back to TCP hints on it).
REFUSED = "connection refused by"

PortOpen = Callable[[], Awaitable[bool]]


class ComebackProbe:
    """While not CONNECTED: "is Temporal back?", called by the supervisor every probe tick (50 ms).

    - A TCP connect every call while the port refuses: nearly free, and on a bare port the first
      sign of a restart. A refused port needs no RPC (nothing can answer); a port that starts
      accepting gets an RPC at once. Once it accepts, the RPCs alone watch it (behind a load
      balancer a connect proves nothing and costs the balancer a dial) until one is refused.
    - A question every ``rpc_interval`` s while the port accepts (``rpc_slow_interval`` once the
      outage is ``slow_after`` s old: 2 a second, then 1.7): behind a load balancer the port
      always accepts, and only an answer counts. Each runs in the background on a connection of
      its own -- a hello on a bare connection (stigmer.temporal.wire), and only if something
      replies, the health RPC on a fresh channel -- so one that hangs on a connection a proxy
      holds open delays nothing: the next starts on time. At most ``rpc_timeout / rpc_interval``
      (2) are in flight.

    ``probe(since)`` returns the verdict of the newest finished RPC launched at or after ``since``
    (when the outage began, on the same clock): True when Temporal answered, False when it did
    not, None when no such RPC has finished yet -- an answer from before the outage says nothing
    about it.
    """

    def __init__(
        self,
        host_port: str,
        *,
        port_open: PortOpen,
        security: TemporalSecurity | None = None,
        namespace: str = "default",
        rpc_interval: float = 0.5,
        rpc_slow_interval: float = 0.6,
        slow_after: float = 20.0,
        rpc_timeout: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        ask: Callable[[float], Awaitable[str | None]] | None = None,
    ) -> None:
        self._port_open = port_open
        self._rpc_interval = rpc_interval
        self._rpc_slow_interval = rpc_slow_interval
        self._slow_after = slow_after
        self._rpc_timeout = rpc_timeout
        self._clock = clock
        self._ask = ask or self._ask_fresh
        self._host_port = host_port
        self._security = security
        self._namespace = namespace
        self._port_was_open = False
        self._last_launch: float | None = None
        self._verdict_of: float = float("-inf")  # when the verdict we hold was taken (an RPC's launch)
        self._answered = False
        self._reason = "not asked yet"
        self._inflight: set[asyncio.Task[None]] = set()
        #: RPCs made (for the bench's cost row and tests).
        self.rpcs = 0
        #: Called on each new verdict (the supervisor's probe_has_news: read it now, not a tick later).
        self.on_verdict: Callable[[], None] | None = None
        #: Called with each RPC's result, True when Temporal answered (the metrics' probe counter).
        self.on_result: Callable[[bool], None] | None = None

    @property
    def last_reason(self) -> str:
        """Why the newest finished RPC did not count as an answer ("" if it did)."""
        return "" if self._answered else self._reason

    async def __call__(self, since: float) -> bool | None:
        now = self._clock()
        if not self._port_was_open and not await self._port_open():
            self._last_launch = None  # when it opens, ask at once
            self._settle(now, "port refuses connections")
        else:
            edge = not self._port_was_open
            self._port_was_open = True
            # (A microsecond's slack: ticks of a float clock land a hair short of the interval.)
            if edge or self._last_launch is None or now - self._last_launch >= self._interval(now, since) - 1e-6:
                self._launch(now)
        return self._answered if self._verdict_of >= since else None

    async def close(self) -> None:
        for task in self._inflight:
            task.cancel()
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=2.0)

    def _interval(self, now: float, since: float) -> float:
        return self._rpc_slow_interval if now - since >= self._slow_after else self._rpc_interval

    def _settle(self, taken: float, reason: str | None) -> None:
        """Keep the verdict taken at ``taken`` unless a newer one already spoke."""
        if taken < self._verdict_of:
            return
        self._verdict_of, self._answered, self._reason = taken, reason is None, reason or ""
        if self.on_verdict is not None:
            self.on_verdict()

    def _launch(self, now: float) -> None:
        self._last_launch = now
        self.rpcs += 1
        task = asyncio.get_running_loop().create_task(self._one(now), name="stigmer-temporal-comeback-rpc")
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _one(self, launched: float) -> None:
        try:
            reason = await self._ask(self._rpc_timeout)
        except Exception as err:  # a certificate file gone, say: not an answer, and say why
            reason = f"{type(err).__name__}: {err}"
        if self.on_result is not None:
            self.on_result(reason is None)
        if reason is not None and reason.startswith(REFUSED) and launched >= self._verdict_of:
            self._port_was_open = False  # a bare port that closed: TCP hints again
        self._settle(launched, reason)

    async def _ask_fresh(self, timeout: float) -> str | None:  # noqa: ASYNC109 -- a gRPC deadline
        """A hello first (stigmer.temporal.wire): behind a load balancer with nothing behind it,
        that answers "no" for a fraction of a grpc channel's cost; then the health RPC."""
        host, port = split_host_port(self._host_port)
        security = self._security or TemporalSecurity()
        try:
            spoke = await replies_to_hello(
                host, port, tls=security.uses_tls, server_name=security.server_name, timeout=timeout
            )
        except Refused:
            return f"{REFUSED} {self._host_port} (is Temporal running?)"
        if not spoke:
            return f"nothing answered at {self._host_port} (a load balancer with no Temporal behind it?)"
        probe = TemporalProbe(self._host_port, security=self._security, namespace=self._namespace)
        try:
            return await probe.answers(timeout)
        finally:
            await probe.close()
