"""AgentExecutionController: create, read and follow agent executions.

Create fails fast and persists nothing while Temporal is unavailable; an execution whose
workflow could not be started is removed before the error is returned, so every id a caller
ever sees belongs to an execution that has (or will get, see the reconciler) a workflow.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping

from stigmer import store as st
from stigmer.store import AgentExecution, Phase

from . import validation as check
from .executions import ExecutionController
from .ports import Starter

KIND = "agent execution"
PREFIX = "aex"


class AgentExecutionController(ExecutionController[AgentExecution, Starter]):
    KIND = KIND
    PREFIX = PREFIX
    LISTENER_KIND = st.AGENT_EXECUTION

    async def create(self, *, agent: str, message: str, runtime_env: Mapping[str, str] | None = None) -> AgentExecution:
        # The size first: an oversized message is rejected without looking at anything else.
        check.check_message(message)
        check.check_agent(agent)
        env = check.check_runtime_env(runtime_env)
        # They travel together in the workflow's payloads (message, agent and env; the reply again).
        check.check_encoded_size("message", [message, agent, *env, *env.values()], what="the message and runtime env")
        creator = await self._require_creator()
        record = self._store.create_agent_execution(agent=agent, message=message, runtime_env=env)
        return await self._start(creator, record)

    def _fetch(self, id: str) -> AgentExecution:
        return self._store.get_agent_execution(id)

    def _page(
        self, *, phase: Phase | None, page_size: int, page_token: str
    ) -> tuple[builtins.list[AgentExecution], str]:
        return self._store.list_agent_executions(phase=phase, page_size=page_size, page_token=page_token)

    def _delete(self, id: str) -> bool:
        return self._store.delete_agent_execution(id)
