"""AgentExecutionController: create, read and follow agent executions.

Create fails fast and persists nothing while Temporal is unavailable; an execution whose
workflow could not be started is removed before the error is returned, so every id a caller
ever sees belongs to an execution that has (or will get, see the reconciler) a workflow.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping

from stigmer import store as st
from stigmer.store import AgentExecution

from . import validation as check
from .executions import ExecutionController
from .ports import Starter

KIND = "agent execution"
PREFIX = "aex"


class AgentExecutionController(ExecutionController[AgentExecution, Starter]):
    KIND = KIND
    PREFIX = PREFIX
    LISTENER_KIND = st.AGENT_EXECUTION

    async def create(
        self,
        *,
        agent: str,
        message: str,
        runtime_env: Mapping[str, str] | None = None,
        request_id: str = "",
    ) -> AgentExecution:
        # The size first: an oversized message is rejected without looking at anything else.
        check.check_message(message)
        check.check_agent(agent)
        env = check.check_runtime_env(runtime_env)
        request = check.check_request_id(request_id)
        # They travel together in the workflow's payloads (message, agent and env; the reply again).
        check.check_encoded_size("message", [message, agent, *env, *env.values()], what="the message and runtime env")
        key = self._request_key(request, {"agent": agent, "message": message, "runtime_env": env})
        return await self._create(
            key,
            lambda key: self._store.admit_agent_execution(agent=agent, message=message, runtime_env=env, request=key),
        )

    def list(
        self,
        *,
        phase: str = "",
        agent: str = "",
        parent_id: str = "",
        created_after: float | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> tuple[builtins.list[AgentExecution], str]:
        """Newest first, filtered by every argument given."""
        wanted = check.parse_phase(phase)
        name = check.check_filter_text("agent", agent)
        parent = check.check_id("wex", parent_id, field="parent_id") if parent_id else ""
        after = check.check_created_after(created_after)
        return self.list_checked(
            lambda size: self._store.list_agent_executions(
                phase=wanted, agent=name, parent_id=parent, created_after=after, page_size=size, page_token=page_token
            ),
            page_size=page_size,
        )

    def _fetch(self, id: str) -> AgentExecution:
        return self._store.get_agent_execution(id)
