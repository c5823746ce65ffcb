"""AgentExecutionController: create, read and follow agent executions.

Create fails fast and persists nothing while Temporal is unavailable; an execution whose
workflow could not be started is removed before the error is returned, so every id a caller
ever sees belongs to an execution that has (or will get, see the reconciler) a workflow.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Mapping

from stigmer import store as st
from stigmer.store import AgentExecution, Store
from stigmer.temporal.creators import AgentExecutionCreator

from . import validation as check
from .availability import Availability, require, start_or_forget
from .errors import NotFound
from .watch import DEFAULT_RECHECK_INTERVAL, follow

KIND = "agent execution"
PREFIX = "aex"


class AgentExecutionController:
    def __init__(
        self,
        *,
        store: Store,
        availability: Availability,
        start_timeout: float = 10.0,
        watch_recheck_interval: float = DEFAULT_RECHECK_INTERVAL,
    ) -> None:
        if start_timeout <= 0:
            raise ValueError(f"start_timeout must be positive, got {start_timeout}")
        self._store = store
        self._availability = availability
        self._start_timeout = start_timeout
        self._recheck = watch_recheck_interval
        # Set and cleared by the Temporal layer from the event loop; a plain attribute read is
        # all a request needs (it keeps its own reference for the rest of the call).
        self._creator: AgentExecutionCreator | None = None

    def set_creator(self, creator: AgentExecutionCreator | None) -> None:
        self._creator = creator

    @property
    def creator(self) -> AgentExecutionCreator | None:
        return self._creator

    async def create(self, *, agent: str, message: str, runtime_env: Mapping[str, str] | None = None) -> AgentExecution:
        # The size first: an oversized message is rejected without looking at anything else.
        check.check_message(message)
        check.check_agent(agent)
        env = check.check_runtime_env(runtime_env)
        # They travel together in the workflow's payloads (message, agent and env; the reply again).
        check.check_encoded_size("message", [message, agent, *env, *env.values()], what="the message and runtime env")
        creator = await require(lambda: self._creator, self._availability, what="agent execution creator")
        record = self._store.create_agent_execution(agent=agent, message=message, runtime_env=env)
        await start_or_forget(
            creator,
            id=record.id,
            timeout=self._start_timeout,
            delete=self._store.delete_agent_execution,
            availability=self._availability,
        )
        return self._read(record.id)

    def get(self, id: str) -> AgentExecution:
        return self._read(check.check_id(PREFIX, id))

    def list(
        self, *, phase: str = "", page_size: int = 0, page_token: str = ""
    ) -> tuple[builtins.list[AgentExecution], str]:
        wanted = check.parse_phase(phase)
        size = check.check_page_size(page_size)
        return check.list_page(
            lambda: self._store.list_agent_executions(phase=wanted, page_size=size, page_token=page_token)
        )

    def watch(self, id: str) -> AsyncIterator[AgentExecution]:
        """The record now, then every change; ends after a terminal phase. NotFound raised here, at once."""
        self.get(id)
        return follow(self._store, kind=st.AGENT_EXECUTION, id=id, read=self._read, recheck_interval=self._recheck)

    def _read(self, id: str) -> AgentExecution:
        try:
            return self._store.get_agent_execution(id)
        except st.NotFound:
            raise NotFound(KIND, id) from None
