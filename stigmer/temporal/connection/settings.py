"""ConnectionSettings: every knob of the Temporal connection, with the product's defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio.service import RetryConfig

from statemachine import BackoffPolicy
from stigmer.temporal.names import TaskQueues
from stigmer.temporal.tls import TemporalSecurity
from stigmer.temporal.wire import split_host_port

#: The reconnect backoff's random spread by default (see ConnectionSettings.backoff).
JITTER = 0.2

#: Retries of the API's calls to Temporal (starting workflows for creates, validations): about
#: 1 s in all (100, 200, 400 ms apart), where the SDK's default keeps a refused call retrying for
#: up to 10 s. A create during an outage then answers UNAVAILABLE within ~1 s and the connection
#: hears of it at once, instead of the create hanging on a dead client while the state says
#: CONNECTED. A blip shorter than that is still ridden out. Workers keep the SDK's patient default
#: on a client of their own, so their completions survive a few seconds of trouble.
API_RETRY = RetryConfig(
    initial_interval_millis=100, multiplier=2.0, max_interval_millis=400, max_elapsed_time_millis=1000, max_retries=4
)


@dataclass(frozen=True, kw_only=True)
class ConnectionSettings:
    host_port: str = "localhost:7233"
    namespace: str = "default"
    queues: TaskQueues = field(default_factory=TaskQueues)
    #: Overall bound on Client.connect: behind a black hole it hangs ~30 s whatever connect_timeout says.
    dial_timeout: float = 3.0
    verify_timeout: float = 2.0
    health_interval: float = 15.0
    health_timeout: float = 2.0
    #: How long a request that found Temporal unavailable waits for one immediate attempt.
    fast_path_wait: float = 3.0
    fast_path: bool = True
    #: Watch Temporal while disconnected and retry at once when it answers again
    #: (stigmer.temporal.probe.ComebackProbe: a TCP connect each tick, a health RPC every 0.5 s).
    probe: bool = True
    #: Ticks every 50 ms for the first 10 s of an outage (a restart is usually over by then), then
    #: every 0.2 s. The comeback probe's questions (every 0.5 s, 0.6 s after 20 s) start on a tick,
    #: so its intervals are multiples of it (at 0.25 s, 0.6 s became 0.75 s); an answer wakes the
    #: supervisor at once (Supervisor.probe_has_news) instead of waiting for the next tick.
    probe_interval: float = 0.05
    probe_slow_interval: float = 0.2
    probe_fast_for: float = 10.0
    worker_start_timeout: float = 10.0
    #: The workers this process runs while CONNECTED (names from running.WORKER_NAMES; none for
    #: the api role), and whether it hands creators to the controllers (not for the worker role).
    workers: tuple[str, ...] = ("agent execution", "workflow execution", "workflow validation")
    creators: bool = True
    #: Bound on stopping old workers; on a dead connection Worker.shutdown() can block ~30 s.
    worker_shutdown_timeout: float = 5.0
    #: Past worker_shutdown_timeout old workers are left to finish in the background up to this
    #: long: cancelling them earlier leaks their core worker and its threads (see _retire).
    worker_retire_limit: float = 60.0
    #: While CONNECTED, ask Temporal's health (stigmer.temporal.probe) this often: a dead
    #: Temporal or path is noticed within ~1.5 s, traffic or not. The SDK clients keep the SDK's
    #: keepalive (30 s): the frontend closes connections that ping faster than every 10 s, and a
    #: workflow task in flight on such a connection is lost for its 10 s task timeout.
    liveness: bool = True
    liveness_interval: float = 0.5
    #: A slow answer is not an outage; a dead path is caught sooner by the probe channel's
    #: own keepalive (~2 s).
    liveness_timeout: float = 5.0
    #: The API's client retry policy (see API_RETRY). ``None``: the API shares the workers'
    #: client and its SDK-default retries, as the original Go server did (one connection).
    api_retry: RetryConfig | None = field(default_factory=lambda: API_RETRY)
    #: 1, 2, 4, 8, 16, 30 s, each +/-20 % at random (as gRPC core does), so that a fleet of
    #: servers does not knock on a recovering Temporal in lockstep.
    backoff: BackoffPolicy = field(default_factory=lambda: BackoffPolicy(jitter=JITTER))
    #: Run workflow code in the SDK's sandbox (stigmer.temporal.workers.workflow_runner).
    workflow_sandbox: bool = False
    #: TLS / mTLS / API key (stigmer.temporal.tls); certificate files are re-read at every dial.
    security: TemporalSecurity = field(default_factory=TemporalSecurity)

    @property
    def host(self) -> str:
        return split_host_port(self.host_port)[0]

    @property
    def port(self) -> int:
        return split_host_port(self.host_port)[1]
