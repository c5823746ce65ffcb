"""SQLite repository for agent executions, workflows and workflow executions.

Import the store from here, not from submodules; its errors are stigmer.errors' StoreError family.
"""

from .ids import is_valid_id, new_id
from .models import AgentExecution, Message, Phase, TaskState, TaskStatus, Workflow, WorkflowExecution
from .sqlite import AGENT_EXECUTION, WORKFLOW, WORKFLOW_EXECUTION, Listener, Store

__all__ = [
    "AGENT_EXECUTION",
    "WORKFLOW",
    "WORKFLOW_EXECUTION",
    "AgentExecution",
    "Listener",
    "Message",
    "Phase",
    "Store",
    "TaskState",
    "TaskStatus",
    "Workflow",
    "WorkflowExecution",
    "is_valid_id",
    "new_id",
]
