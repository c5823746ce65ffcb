"""Roles: parsing, what each role runs, the SQLite refusal, and the one-reconciler lease."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stigmer.config import Config
from stigmer.controllers import LeadingReconciler
from stigmer.errors import ConfigError
from stigmer.roles import Queue, Role, RoleSpec, parse_queues
from stigmer.security import Secret
from stigmer.store import Store
from stigmer.testing.eventually import eventually

PG = Secret("postgresql://stigmer@127.0.0.1:5432/stigmer")


def test_queues_parse_and_bad_names_name_the_setting() -> None:
    assert parse_queues(None) == frozenset(Queue)
    assert parse_queues(" Agent , workflow ") == {Queue.AGENT, Queue.WORKFLOW}
    with pytest.raises(ConfigError, match="--queues / STIGMER_QUEUES: unknown queue 'agents'"):
        parse_queues("agents")


@pytest.mark.parametrize(
    ("spec", "workers", "api"),
    [
        (RoleSpec(), ("agent execution", "workflow execution", "workflow validation"), True),
        (RoleSpec(Role.API), (), True),
        (RoleSpec(Role.WORKER, frozenset({Queue.AGENT})), ("agent execution",), False),
        (
            RoleSpec(Role.WORKER, frozenset({Queue.VALIDATION, Queue.AGENT})),
            ("agent execution", "workflow validation"),
            False,
        ),
    ],
)
def test_each_role_runs_its_part(spec: RoleSpec, workers: tuple[str, ...], api: bool) -> None:
    assert spec.worker_names == workers and spec.serves_api is api
    settings = Config(role=spec, database_url=PG).connection_settings()
    assert settings.workers == workers and settings.creators is api


@pytest.mark.parametrize("role", [Role.API, Role.WORKER])
def test_roles_other_than_all_refuse_sqlite(role: Role) -> None:
    with pytest.raises(ConfigError, match=f"--role {role.value} needs a store the other processes share"):
        Config(role=RoleSpec(role))
    Config(role=RoleSpec(role), database_url=PG)  # fine with PostgreSQL


class FakeLease:
    def __init__(self) -> None:
        self.free = True
        self.mine = False
        self.released = False

    def acquire(self) -> bool:
        if self.mine or self.free:
            self.free, self.mine = False, True
        return self.mine

    def release(self) -> None:
        self.released, self.mine, self.free = True, False, True


class FakeReconciler:
    def __init__(self) -> None:
        self.passes: list[object] = []

    async def reconcile(self, session: Any) -> Any:
        self.passes.append(session)
        return None


async def test_only_the_lease_holder_reconciles_and_a_free_lease_is_taken_over(tmp_path) -> None:
    lease = FakeLease()
    lease.free = False  # another server holds it
    reconciler = FakeReconciler()
    session = object()
    leader = LeadingReconciler(
        reconciler,  # type: ignore[arg-type]
        lease,
        session=lambda: session,  # type: ignore[arg-type,return-value]
        period=60,
        check_every=0.01,
    )
    assert await leader.on_connected(session) is None  # type: ignore[arg-type]
    assert reconciler.passes == [] and not leader.leading
    task = asyncio.create_task(leader.run())
    try:
        lease.free = True  # its holder died
        await eventually(lambda: reconciler.passes == [session], timeout=5, what="a pass on taking over")
        assert leader.leading
        await leader.on_connected(session)  # type: ignore[arg-type]
        assert len(reconciler.passes) == 2
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert lease.released


def test_a_sqlite_store_always_holds_its_lease(tmp_path) -> None:
    with Store.open(tmp_path) as store:
        lease = store.lease(1)
        assert lease.acquire() and lease.acquire()
        lease.release()
