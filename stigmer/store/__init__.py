"""SQLite repository for agent executions, workflows and workflow executions.

Import the store from here, not from submodules; its errors are stigmer.errors' StoreError family.
"""

from .ids import is_valid_id, new_id
from .models import AgentExecution, Message, Phase, TaskState, TaskStatus, Workflow, WorkflowExecution
from .requests import DEFAULT_REQUEST_ID_TTL, RequestKey, body_digest
from .sqlite import AGENT_EXECUTION, WORKFLOW, WORKFLOW_EXECUTION, Execution, Listener, Store

__all__ = [
    "AGENT_EXECUTION",
    "DEFAULT_REQUEST_ID_TTL",
    "WORKFLOW",
    "WORKFLOW_EXECUTION",
    "AgentExecution",
    "Execution",
    "Listener",
    "Message",
    "Phase",
    "RequestKey",
    "Store",
    "TaskState",
    "TaskStatus",
    "Workflow",
    "WorkflowExecution",
    "body_digest",
    "is_valid_id",
    "new_id",
]
