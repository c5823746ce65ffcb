"""Client: the blocking face of :class:`AsyncClient`, which it runs on an event loop of its own thread.

No call logic lives here: each method hands the AsyncClient's coroutine to the loop and waits
for it; iterators pull one item at a time the same way. So the two faces cannot drift apart.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Collection, Coroutine, Iterator, Mapping
from datetime import datetime
from typing import Any, TypeVar

from stigmer.client._aio import AsyncClient
from stigmer.client.models import AgentExecution, Page, ServerStatus, ValidationResult, Workflow, WorkflowExecution
from stigmer.phases import Phase
from stigmer.security import ClientSecurity

T = TypeVar("T")


class _Loop:
    """An event loop running in a daemon thread, started on first use."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name="stigmer-client", daemon=True)
                self._thread.start()
            loop = self._loop
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    def stop(self) -> None:
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5.0)
            if not thread.is_alive():
                loop.close()


class Client:
    """A blocking connection to one stigmer server (or several); the same arguments and methods as
    :class:`AsyncClient` (see there), without ``await``. ``with Client() as client: ...``"""

    def __init__(
        self,
        *,
        address: str | None = None,
        token: str | None = None,
        security: ClientSecurity | None = None,
        timeout: float = 30.0,
        retry_unavailable: float = 0.0,
    ) -> None:
        self._aio = AsyncClient(
            address=address, token=token, security=security, timeout=timeout, retry_unavailable=retry_unavailable
        )
        self._loop = _Loop()
        self._closed = False

    @property
    def address(self) -> str:
        return self._aio.address

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel and stop the client's thread; safe twice."""
        if self._closed:
            return
        self._closed = True
        self._loop.run(self._aio.close())
        self._loop.stop()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise RuntimeError("the client is closed")
        return self._loop.run(coro)

    def _iterate(self, items: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self._run(anext(items))  # type: ignore[arg-type]  # anext() is an awaitable coroutine here
                except StopAsyncIteration:
                    return
        finally:
            if not self._closed:
                self._run(items.aclose())  # type: ignore[attr-defined]  # an async generator

    # -- agent executions

    def create_agent_execution(
        self,
        *,
        agent: str,
        message: str,
        runtime_env: Mapping[str, str] | None = None,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> AgentExecution:
        return self._run(
            self._aio.create_agent_execution(
                agent=agent, message=message, runtime_env=runtime_env, request_id=request_id, timeout=timeout
            )
        )

    def get_agent_execution(self, id: str, *, timeout: float | None = None) -> AgentExecution:
        return self._run(self._aio.get_agent_execution(id, timeout=timeout))

    def list_agent_executions_page(
        self,
        *,
        phase: Phase | str | None = None,
        agent: str = "",
        parent_id: str = "",
        created_after: datetime | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> Page:
        return self._run(
            self._aio.list_agent_executions_page(
                phase=phase,
                agent=agent,
                parent_id=parent_id,
                created_after=created_after,
                page_size=page_size,
                page_token=page_token,
                timeout=timeout,
            )
        )

    def list_agent_executions(
        self,
        *,
        phase: Phase | str | None = None,
        agent: str = "",
        parent_id: str = "",
        created_after: datetime | None = None,
        page_size: int = 100,
    ) -> Iterator[AgentExecution]:
        return self._iterate(
            self._aio.list_agent_executions(
                phase=phase, agent=agent, parent_id=parent_id, created_after=created_after, page_size=page_size
            )
        )

    def watch_agent_execution(self, id: str, *, timeout: float | None = None) -> Iterator[AgentExecution]:
        return self._iterate(self._aio.watch_agent_execution(id, timeout=timeout))

    def cancel_agent_execution(
        self,
        id: str,
        *,
        reason: str = "",
        requested_by: str | None = None,
        wait: bool = False,
        wait_timeout: float = 60.0,
        timeout: float | None = None,
    ) -> AgentExecution:
        return self._run(
            self._aio.cancel_agent_execution(
                id, reason=reason, requested_by=requested_by, wait=wait, wait_timeout=wait_timeout, timeout=timeout
            )
        )

    def delete_agent_execution(self, id: str, *, force: bool = False, timeout: float | None = None) -> AgentExecution:
        return self._run(self._aio.delete_agent_execution(id, force=force, timeout=timeout))

    # -- workflows

    def create_workflow(
        self, document: str, *, request_id: str | None = None, timeout: float | None = None
    ) -> Workflow:
        return self._run(self._aio.create_workflow(document, request_id=request_id, timeout=timeout))

    def validate_workflow(self, document: str, *, timeout: float | None = None) -> ValidationResult:
        return self._run(self._aio.validate_workflow(document, timeout=timeout))

    def get_workflow(self, id_or_name: str, *, timeout: float | None = None) -> Workflow:
        return self._run(self._aio.get_workflow(id_or_name, timeout=timeout))

    def list_workflows_page(self, *, page_size: int = 0, page_token: str = "", timeout: float | None = None) -> Page:
        return self._run(self._aio.list_workflows_page(page_size=page_size, page_token=page_token, timeout=timeout))

    def list_workflows(self, *, page_size: int = 100) -> Iterator[Workflow]:
        return self._iterate(self._aio.list_workflows(page_size=page_size))

    def delete_workflow(self, id_or_name: str, *, timeout: float | None = None) -> Workflow:
        return self._run(self._aio.delete_workflow(id_or_name, timeout=timeout))

    # -- workflow executions

    def create_workflow_execution(
        self, *, workflow: str, input: str = "", request_id: str | None = None, timeout: float | None = None
    ) -> WorkflowExecution:
        return self._run(
            self._aio.create_workflow_execution(workflow=workflow, input=input, request_id=request_id, timeout=timeout)
        )

    def get_workflow_execution(self, id: str, *, timeout: float | None = None) -> WorkflowExecution:
        return self._run(self._aio.get_workflow_execution(id, timeout=timeout))

    def list_workflow_executions_page(
        self,
        *,
        phase: Phase | str | None = None,
        workflow: str = "",
        created_after: datetime | None = None,
        page_size: int = 0,
        page_token: str = "",
        timeout: float | None = None,
    ) -> Page:
        return self._run(
            self._aio.list_workflow_executions_page(
                phase=phase,
                workflow=workflow,
                created_after=created_after,
                page_size=page_size,
                page_token=page_token,
                timeout=timeout,
            )
        )

    def list_workflow_executions(
        self,
        *,
        phase: Phase | str | None = None,
        workflow: str = "",
        created_after: datetime | None = None,
        page_size: int = 100,
    ) -> Iterator[WorkflowExecution]:
        return self._iterate(
            self._aio.list_workflow_executions(
                phase=phase, workflow=workflow, created_after=created_after, page_size=page_size
            )
        )

    def watch_workflow_execution(self, id: str, *, timeout: float | None = None) -> Iterator[WorkflowExecution]:
        return self._iterate(self._aio.watch_workflow_execution(id, timeout=timeout))

    def cancel_workflow_execution(
        self,
        id: str,
        *,
        reason: str = "",
        requested_by: str | None = None,
        wait: bool = False,
        wait_timeout: float = 60.0,
        timeout: float | None = None,
    ) -> WorkflowExecution:
        return self._run(
            self._aio.cancel_workflow_execution(
                id, reason=reason, requested_by=requested_by, wait=wait, wait_timeout=wait_timeout, timeout=timeout
            )
        )

    def delete_workflow_execution(
        self, id: str, *, force: bool = False, timeout: float | None = None
    ) -> WorkflowExecution:
        return self._run(self._aio.delete_workflow_execution(id, force=force, timeout=timeout))

    # -- the connection to Temporal

    def status(self, *, timeout: float | None = None) -> ServerStatus:
        return self._run(self._aio.status(timeout=timeout))

    def is_temporal_connected(self, *, timeout: float | None = None) -> bool:
        return self._run(self._aio.is_temporal_connected(timeout=timeout))

    def wait_temporal_connected(self, timeout: float = 30.0) -> ServerStatus:
        return self._run(self._aio.wait_temporal_connected(timeout))

    def wait_for_phase(
        self, id: str, phases: Collection[Phase | str], timeout: float = 60.0
    ) -> AgentExecution | WorkflowExecution:
        return self._run(self._aio.wait_for_phase(id, phases, timeout))
