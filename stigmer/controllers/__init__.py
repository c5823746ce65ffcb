"""Controllers: the service's use cases, between the gRPC servicers and (store, Temporal).

None of them knows the connection state machine: each holds an optional creator (or validator)
that the Temporal layer sets while connected, and asks `Availability` for one fast retry when
it finds none. The reconciler runs on every entry to CONNECTED. What they raise is in
stigmer.errors.
"""

from .agent_executions import AgentExecutionController
from .leadership import LEASE_KEY, LeadingReconciler
from .ports import Availability, RemoteStatus, Session, Starter, Validator
from .reconciler import LOST_REASON, NO_RESULT_REASON, Reconciler, ReconcileReport
from .workflow_executions import WorkflowExecutionController
from .workflows import WorkflowController

__all__ = [
    "LEASE_KEY",
    "LOST_REASON",
    "NO_RESULT_REASON",
    "AgentExecutionController",
    "Availability",
    "LeadingReconciler",
    "ReconcileReport",
    "Reconciler",
    "RemoteStatus",
    "Session",
    "Starter",
    "Validator",
    "WorkflowController",
    "WorkflowExecutionController",
]
