"""Each package's face, pinned (issue 18): a name added to or dropped from ``__all__`` is a
decision, made here on purpose. Every exported name resolves, and nothing public is left out."""

from __future__ import annotations

import importlib
import inspect
import re

import pytest

FACES = {
    "statemachine": {
        "BackoffPolicy", "Clock", "ConnectionLifecycle", "Edge", "Effects", "EventLog", "ManualClock",
        "Misconfiguration", "Snapshot", "State", "Supervisor", "SystemClock", "TRANSITIONS", "TransitionEvent",
        "Trigger", "describe", "with_timeout",
    },
    "stigmer.errors": {
        "AlreadyExistsError", "ConfigError", "DatabaseError", "ExitCode", "FailedPreconditionError",
        "InvalidArgumentError", "NotFoundError", "StigmerError", "StoreError", "StoreFullError",
        "TemporalUnavailableError", "UNAVAILABLE_MESSAGE", "PhaseNotReachedError", "ServerUnreachableError",
        "UnauthenticatedError", "WaitTimeoutError", "DatabaseUnavailableError",
    },
    "stigmer.controllers": {
        "AgentExecutionController", "Availability", "LOST_REASON", "NO_RESULT_REASON", "ReconcileReport",
        "Reconciler", "RemoteStatus", "Session", "Starter", "Validator", "WorkflowController",
        "WorkflowExecutionController", "LEASE_KEY", "LeadingReconciler",
    },
    "stigmer.client": {
        "AgentExecution", "AlreadyExistsError", "AsyncClient", "Client", "FailedPreconditionError",
        "InvalidArgumentError", "Message", "NotFoundError", "Page", "Phase", "PhaseNotReachedError", "ServerStatus",
        "ServerUnreachableError", "StigmerError", "TaskState", "TaskStatus", "TemporalUnavailableError", "Transition",
        "UnauthenticatedError", "ValidationResult", "WaitTimeoutError", "Workflow", "WorkflowExecution", "to_json",
    },
    "stigmer.phases": {"Phase", "TaskStatus"},
    "stigmer.testing": {
        "CliResult", "StigmerServerExitedError", "StigmerServerFactory", "StigmerServerProcess", "TemporalDevServer",
        "TemporalDevServerFactory", "TemporalExitedError", "TemporalNotFoundError", "eventually", "free_port",
        "is_port_free", "stigmer_binary", "wait_for_log", "wait_until",
    },
    "stigmer.testing.factories": {"StigmerServerFactory", "TemporalDevServerFactory", "close_all", "log_tail"},
    "stigmer.controllers.ports": {"Availability", "RemoteStatus", "Session", "Starter", "Validator"},
    "stigmer.store": {
        "AGENT_EXECUTION", "AgentExecution", "Listener", "Message", "Phase", "Store", "TaskState", "TaskStatus",
        "WORKFLOW", "WORKFLOW_EXECUTION", "Workflow", "WorkflowExecution", "is_valid_id", "new_id",
        "DEFAULT_REQUEST_ID_TTL", "Execution", "RequestKey", "body_digest",
    },
    "stigmer.temporal.connection": {
        "API_RETRY", "ConnectionSettings", "CreatorTargets", "JITTER", "TemporalClients", "TemporalConnection",
        "WORKER_NAMES", "WorkerStartError", "make_runtime", "process_runtime",
    },
    "stigmer.metrics": {
        "ConnectionMetrics", "ExecutionMetrics", "GrpcMetrics", "LifecycleView", "MetricsEndpoint",
        "MetricsListenError", "PhaseCounts", "ServerMetrics", "WorkersView", "split_address",
    },
    "stigmer.server": {
        "BoundServer", "INTERNAL_MESSAGE", "ListenError", "MAX_RECEIVE_MESSAGE_BYTES", "OVERALL", "RETRY_AFTER_KEY",
        "STATE_KEY", "ServerHealth", "Services", "StatusProvider", "StatusServicer", "TEMPORAL_SERVICE",
        "DATABASE_SERVICE", "build_server", "grpc_errors",
    },
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(FACES))
def test_the_face_is_what_was_agreed(name: str) -> None:
    module = importlib.import_module(name)
    assert set(module.__all__) == FACES[name]
    assert len(module.__all__) == len(set(module.__all__)), "a name listed twice"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, missing


@pytest.mark.parametrize("name", sorted(FACES))
def test_nothing_public_is_left_out(name: str) -> None:
    """Classes and functions defined in a face module itself are exported (submodules' are theirs)."""
    module = importlib.import_module(name)
    defined = {
        n
        for n, value in vars(module).items()
        if not n.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", "") == name
    }
    assert defined <= set(module.__all__), sorted(defined - set(module.__all__))


def test_the_error_tree_in_the_docstring_is_the_class_tree() -> None:
    errors = importlib.import_module("stigmer.errors")
    parents: list[tuple[int, str]] = []
    drawn = []
    for line in (errors.__doc__ or "").splitlines():
        found = re.match(r"^(\s*)(?:[│ ]*[├└]── )?([A-Z]\w+Error)\b", line)
        if not found or not hasattr(errors, found.group(2)):
            continue
        depth = len(line) - len(line.lstrip(" │├└─"))
        while parents and parents[-1][0] >= depth:
            parents.pop()
        cls = getattr(errors, found.group(2))
        if parents:
            parent = getattr(errors, parents[-1][1])
            assert parent in cls.__bases__, f"{cls.__name__} is drawn under {parent.__name__}"
        parents.append((depth, found.group(2)))
        drawn.append(cls)
    every = {c for c in vars(errors).values() if inspect.isclass(c) and issubclass(c, errors.StigmerError)}
    assert set(drawn) == every, sorted(c.__name__ for c in every ^ set(drawn))
