"""stigmer.metrics fed by hand: transition events on a fake clock, probe results, a fake store and
reconciliation reports; what Prometheus would scrape is parsed with prometheus_client.parser."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Mapping

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from statemachine import EventLog, State, TransitionEvent, Trigger
from statemachine.supervisor import SUPERSEDED
from stigmer.controllers import ReconcileReport
from stigmer.errors import ConfigError, DatabaseUnavailableError
from stigmer.metrics import MetricsEndpoint, MetricsListenError, ServerMetrics, split_address
from stigmer.metrics.connection import COMEBACK, LIVENESS


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeLifecycle:
    """ConnectionLifecycle's state and feed; ``move`` makes a transition as the machine would."""

    def __init__(self, clock: FakeClock) -> None:
        self.events = EventLog()
        self.state = State.DISCONNECTED
        self._clock = clock

    def move(self, dest: State, trigger: Trigger, *, cause: str = "", at: float | None = None) -> None:
        when = self._clock.now if at is None else at
        event = TransitionEvent(
            seq=self.events.next_seq(),
            source=self.state,
            dest=dest,
            trigger=trigger,
            cause=cause,
            attempt=0,
            at=when,
            wall=when,
        )
        self.state = dest
        self.events.append(event)


def samples(metrics: ServerMetrics) -> list[Sample]:
    return [s for family in text_string_to_metric_families(metrics.exposition()) for s in family.samples]


def value(metrics: ServerMetrics, name: str, **labels: str) -> float:
    found = [s.value for s in samples(metrics) if s.name == name and s.labels == labels]
    assert len(found) == 1, f"{name}{labels}: {found}"
    return found[0]


def series(metrics: ServerMetrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in samples(metrics) if s.name == name}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def rig(clock: FakeClock) -> tuple[ServerMetrics, FakeLifecycle]:
    metrics = ServerMetrics(clock=clock)
    lifecycle = FakeLifecycle(clock)
    metrics.follow(lifecycle, workers=lambda: {"q-agent": lifecycle.state is State.CONNECTED, "q-validate": False})
    return metrics, lifecycle


def states(metrics: ServerMetrics) -> dict[str, float]:
    return {dict(k)["state"]: v for k, v in series(metrics, "stigmer_temporal_connection_state").items()}


def test_every_state_and_edge_is_there_from_the_start(rig: tuple[ServerMetrics, FakeLifecycle]) -> None:
    metrics, _ = rig
    assert states(metrics) == {state.value: (1.0 if state is State.DISCONNECTED else 0.0) for state in State}
    edges = series(metrics, "stigmer_temporal_transitions_total")
    assert len(edges) == 12 and set(edges.values()) == {0.0}  # 7 edges + stop from 5 states
    assert (("from", "CONNECTED"), ("to", "UNHEALTHY"), ("trigger", "health_failed")) in edges
    outcomes = {dict(k)["outcome"] for k in series(metrics, "stigmer_temporal_reconnect_attempts_total")}
    assert outcomes == {"success", "failure", "superseded", "cancelled"}


def test_an_outage_moves_state_transitions_attempts_and_the_histogram(
    rig: tuple[ServerMetrics, FakeLifecycle], clock: FakeClock
) -> None:
    metrics, lifecycle = rig
    clock.now = 103.0
    assert value(metrics, "stigmer_temporal_outage_age_seconds") == 3.0  # never connected since start
    lifecycle.move(State.CONNECTING, Trigger.START)
    lifecycle.move(State.CONNECTED, Trigger.CONNECT_OK)
    assert states(metrics)["CONNECTED"] == 1.0 and sum(states(metrics).values()) == 1.0
    assert value(metrics, "stigmer_temporal_outage_age_seconds") == 0.0
    assert value(metrics, "stigmer_temporal_outage_seconds_count") == 0.0  # waiting for the first one is no outage
    assert value(metrics, "stigmer_temporal_workers_running", queue="q-agent") == 1.0
    assert value(metrics, "stigmer_temporal_workers_running", queue="q-validate") == 0.0

    clock.now = 110.0
    lifecycle.move(State.UNHEALTHY, Trigger.HEALTH_FAILED, cause="health probe failed")
    clock.now = 111.0
    lifecycle.move(State.RECONNECTING, Trigger.RECONNECT)
    lifecycle.move(State.UNHEALTHY, Trigger.RECONNECT_FAILED, cause="connection refused")
    lifecycle.move(State.RECONNECTING, Trigger.RECONNECT)
    lifecycle.move(State.UNHEALTHY, Trigger.RECONNECT_FAILED, cause=SUPERSEDED)
    clock.now = 113.5
    assert states(metrics)["UNHEALTHY"] == 1.0
    assert value(metrics, "stigmer_temporal_outage_age_seconds") == 3.5
    assert value(metrics, "stigmer_temporal_workers_running", queue="q-agent") == 0.0
    lifecycle.move(State.RECONNECTING, Trigger.RECONNECT)
    clock.now = 115.5
    lifecycle.move(State.CONNECTED, Trigger.RECONNECT_OK)

    assert value(metrics, "stigmer_temporal_outage_seconds_count") == 1.0
    assert value(metrics, "stigmer_temporal_outage_seconds_sum") == 5.5
    assert value(metrics, "stigmer_temporal_outage_seconds_bucket", le="5.0") == 0.0
    assert value(metrics, "stigmer_temporal_outage_seconds_bucket", le="10.0") == 1.0
    assert value(metrics, "stigmer_temporal_outage_age_seconds") == 0.0
    moved = {k: v for k, v in series(metrics, "stigmer_temporal_transitions_total").items() if v}
    assert moved == {
        (("from", "DISCONNECTED"), ("to", "CONNECTING"), ("trigger", "start")): 1.0,
        (("from", "CONNECTING"), ("to", "CONNECTED"), ("trigger", "connect_ok")): 1.0,
        (("from", "CONNECTED"), ("to", "UNHEALTHY"), ("trigger", "health_failed")): 1.0,
        (("from", "UNHEALTHY"), ("to", "RECONNECTING"), ("trigger", "reconnect")): 3.0,
        (("from", "RECONNECTING"), ("to", "UNHEALTHY"), ("trigger", "reconnect_failed")): 2.0,
        (("from", "RECONNECTING"), ("to", "CONNECTED"), ("trigger", "reconnect_ok")): 1.0,
    }
    attempts = {dict(k)["outcome"]: v for k, v in series(metrics, "stigmer_temporal_reconnect_attempts_total").items()}
    assert attempts == {"success": 2.0, "failure": 1.0, "superseded": 1.0, "cancelled": 0.0}


def test_a_shutdown_is_no_outage_and_cancels_the_attempt_in_flight(
    rig: tuple[ServerMetrics, FakeLifecycle], clock: FakeClock
) -> None:
    metrics, lifecycle = rig
    lifecycle.move(State.CONNECTING, Trigger.START)
    lifecycle.move(State.STOPPED, Trigger.STOP, cause="shutdown")
    assert value(metrics, "stigmer_temporal_reconnect_attempts_total", outcome="cancelled") == 1.0
    assert value(metrics, "stigmer_temporal_outage_age_seconds") == 0.0
    assert states(metrics)["STOPPED"] == 1.0
    metrics.close()
    metrics.close()
    lifecycle.move(State.STOPPED, Trigger.STOP)  # nobody listens any more: not counted
    stops = {dict(k)["from"]: v for k, v in series(metrics, "stigmer_temporal_transitions_total").items() if v}
    assert stops == {"DISCONNECTED": 1.0, "CONNECTING": 1.0}


def test_leaving_connected_for_stopped_starts_no_outage(
    rig: tuple[ServerMetrics, FakeLifecycle], clock: FakeClock
) -> None:
    metrics, lifecycle = rig
    lifecycle.move(State.CONNECTING, Trigger.START)
    lifecycle.move(State.CONNECTED, Trigger.CONNECT_OK)
    lifecycle.move(State.STOPPED, Trigger.STOP)
    clock.now += 60
    assert value(metrics, "stigmer_temporal_outage_age_seconds") == 0.0
    assert value(metrics, "stigmer_temporal_outage_seconds_count") == 0.0


def test_following_starts_from_the_state_at_hand(clock: FakeClock) -> None:
    lifecycle = FakeLifecycle(clock)
    lifecycle.state = State.CONNECTED
    metrics = ServerMetrics(clock=clock)
    metrics.follow(lifecycle)
    assert states(metrics)["CONNECTED"] == 1.0 and value(metrics, "stigmer_temporal_outage_age_seconds") == 0.0
    assert series(metrics, "stigmer_temporal_workers_running") == {}  # no view of the workers given
    with pytest.raises(RuntimeError, match="twice"):
        metrics.follow(lifecycle)


def test_probe_results_are_counted_by_probe_and_result(rig: tuple[ServerMetrics, FakeLifecycle]) -> None:
    from stigmer.temporal import probe

    assert (probe.LIVENESS, probe.COMEBACK) == (LIVENESS, COMEBACK)  # the names the connection reports
    metrics, _ = rig
    for answered in (True, True, False):
        metrics.probe(LIVENESS, answered)
    metrics.probe(COMEBACK, False)
    counts = {tuple(sorted(dict(k).values())): v for k, v in series(metrics, "stigmer_temporal_probe_total").items()}
    assert counts == {
        ("answered", "liveness"): 2.0,
        ("failed", "liveness"): 1.0,
        ("answered", "comeback"): 0.0,
        ("comeback", "failed"): 1.0,
    }
    metrics.probe("another", True)
    assert value(metrics, "stigmer_temporal_probe_total", probe="another", result="answered") == 1.0


class FakeStore:
    def __init__(self) -> None:
        self.down = False
        self.calls = 0

    def count_by_phase(self) -> Mapping[str, Mapping[str, int]]:
        self.calls += 1
        if self.down:
            raise DatabaseUnavailableError("database unavailable: test")
        return {"agent_execution": {"PENDING": 2, "COMPLETED": 5}, "workflow_execution": {"PENDING": 0}}


def test_the_executions_gauge_is_read_from_the_store_at_each_scrape() -> None:
    metrics, store = ServerMetrics(), FakeStore()
    metrics.watch(store)
    assert value(metrics, "stigmer_executions", kind="agent_execution", phase="PENDING") == 2.0
    assert value(metrics, "stigmer_executions", kind="agent_execution", phase="COMPLETED") == 5.0
    assert value(metrics, "stigmer_executions", kind="workflow_execution", phase="PENDING") == 0.0
    before = store.calls
    metrics.exposition()
    assert store.calls == before + 1  # one count_by_phase() per scrape
    store.down = True  # the rest of the scrape still works; the gauge is left out, not zeroed
    assert series(metrics, "stigmer_executions") == {}
    assert states(metrics)["DISCONNECTED"] == 0.0  # (nothing followed here: no state is current)
    with pytest.raises(RuntimeError, match="twice"):
        metrics.watch(store)


def test_reconciliation_passes_and_actions_are_counted() -> None:
    metrics = ServerMetrics()
    metrics.reconciled(ReconcileReport(checked=6, running=2, restarted=1, failed=1, cancelled=1, errors=1))
    metrics.reconciled(ReconcileReport(checked=1, restarted=1, interrupted=True))
    metrics.reconciled(ReconcileReport(superseded=True))
    actions = {dict(k)["action"]: v for k, v in series(metrics, "stigmer_reconciler_actions_total").items()}
    assert actions == {
        "running": 2.0,
        "restarted": 2.0,
        "failed": 1.0,
        "cancelled": 1.0,
        "finished": 0.0,
        "left_to_parent": 0.0,
        "error": 1.0,
    }
    passes = {dict(k)["outcome"]: v for k, v in series(metrics, "stigmer_reconciler_passes_total").items()}
    assert passes == {"completed": 1.0, "interrupted": 1.0, "superseded": 1.0}


def test_fast_fails_are_counted_by_kind() -> None:
    metrics = ServerMetrics()
    metrics.fast_fail("agent_execution")
    metrics.fast_fail("agent_execution")
    metrics.fast_fail("workflow")
    kinds = {dict(k)["kind"]: v for k, v in series(metrics, "stigmer_create_fast_fails_total").items()}
    assert kinds == {"agent_execution": 2.0, "workflow_execution": 0.0, "workflow": 1.0}


def test_two_servers_in_one_process_have_registries_of_their_own(clock: FakeClock) -> None:
    one, two = ServerMetrics(clock=clock), ServerMetrics(clock=clock)
    one.fast_fail("workflow")
    assert value(one, "stigmer_create_fast_fails_total", kind="workflow") == 1.0
    assert value(two, "stigmer_create_fast_fails_total", kind="workflow") == 0.0


def test_no_label_carries_an_id(rig: tuple[ServerMetrics, FakeLifecycle]) -> None:
    metrics, lifecycle = rig
    metrics.watch(FakeStore())
    lifecycle.move(State.CONNECTING, Trigger.START, cause="first dial")
    names = {name for s in samples(metrics) for name in s.labels}
    assert names <= {"state", "from", "to", "trigger", "outcome", "probe", "result", "queue", "kind", "phase",
                     "action", "le"}  # fmt: skip
    assert all(s.name.startswith("stigmer_") for s in samples(metrics))


# ------------------------------------------------------------------------------ the endpoint


def test_the_endpoint_serves_the_registry_and_stops() -> None:
    metrics = ServerMetrics()
    endpoint = MetricsEndpoint("127.0.0.1:0", metrics.registry)
    endpoint.start()
    port = endpoint.port
    try:
        assert endpoint.url == f"http://127.0.0.1:{endpoint.port}/metrics"
        with urllib.request.urlopen(endpoint.url, timeout=5) as reply:
            text = reply.read().decode()
        assert {f.name for f in text_string_to_metric_families(text)} >= {
            "stigmer_temporal_connection_state",
            "stigmer_grpc_requests",
            "stigmer_create_fast_fails",
        }
        with pytest.raises(RuntimeError, match="twice"):
            endpoint.start()
    finally:
        endpoint.stop()
    endpoint.stop()
    with socket.create_server(("127.0.0.1", port)):  # the port is free again
        pass


def test_an_address_in_use_is_a_config_error_naming_the_flag() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        endpoint = MetricsEndpoint(address, ServerMetrics().registry)
        with pytest.raises(MetricsListenError) as info:
            endpoint.start()
    assert isinstance(info.value, ConfigError)
    message = str(info.value)
    assert address in message and "in use" in message.lower() and "--metrics-address" in message
    with pytest.raises(MetricsListenError, match="not a HOST:PORT"):
        MetricsEndpoint("nowhere", ServerMetrics().registry).start()


@pytest.mark.parametrize(
    ("address", "expected"),
    [("127.0.0.1:9464", ("127.0.0.1", 9464)), ("[::1]:9464", ("::1", 9464)), ("localhost:0", ("localhost", 0))],
)
def test_split_address(address: str, expected: tuple[str, int]) -> None:
    assert split_address(address) == expected


@pytest.mark.parametrize("address", ["9464", ":9464", "host:", "host:70000", "host:http"])
def test_split_address_refuses_what_is_not_host_port(address: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        split_address(address)
