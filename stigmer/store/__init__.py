"""SQLite repository for agent executions, workflows and workflow executions.

The interface is agreed in notes/store_spec.md; import everything from here, not from submodules.
"""

from .ids import is_valid_id, new_id
from .models import (
    AgentExecution,
    AlreadyExists,
    Message,
    NotFound,
    Phase,
    StoreError,
    StoreFull,
    TaskState,
    TaskStatus,
    Workflow,
    WorkflowExecution,
)
from .sqlite import AGENT_EXECUTION, WORKFLOW, WORKFLOW_EXECUTION, Listener, Store

__all__ = [
    "AGENT_EXECUTION",
    "WORKFLOW",
    "WORKFLOW_EXECUTION",
    "AgentExecution",
    "AlreadyExists",
    "Listener",
    "Message",
    "NotFound",
    "Phase",
    "Store",
    "StoreError",
    "StoreFull",
    "TaskState",
    "TaskStatus",
    "Workflow",
    "WorkflowExecution",
    "is_valid_id",
    "new_id",
]
