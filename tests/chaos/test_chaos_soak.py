"""Chaos soak (issue 7): real processes, eight clients of load, a seeded schedule of faults.

A stigmer server talks to a Temporal dev server through a TcpProxy. While the clients create
agent executions (plain, slow, failing) and workflow executions, the schedule SIGKILLs or
SIGTERMs Temporal and restarts it, black-holes or refuses the proxy, and once SIGKILLs the
stigmer server and restarts it on the same data dir. Then every promise is judged (report.py) and
the table is printed and written to ``<tmp_path>/chaos-<mode>.txt``.

The proxy is a load balancer of each kind in turn: in the persisted mode it resets a connection
whose Temporal is down (accepts, then closes), in the in-memory mode it holds it open and silent
(accepts, never answers): either way its port accepts while Temporal is dead (issue 12).

CI runs 40 faults across the two modes (Temporal persisted with --db-filename, and in memory);
``STIGMER_CHAOS_FAULTS=200`` runs a longer soak, ``STIGMER_CHAOS_SEED=n`` another schedule.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.harness import FaultKind, Soak, baseline_index, make_schedule
from tests.chaos.report import judge

pytestmark = pytest.mark.temporal

TOTAL_FAULTS = int(os.environ.get("STIGMER_CHAOS_FAULTS", "40"))
SEED = int(os.environ.get("STIGMER_CHAOS_SEED", "7"))
FAULTS_PER_MODE = max(3, (TOTAL_FAULTS + 1) // 2)
#: A fault cycle takes ~5 s (hold, recovery, gap); the rest is start-up and checkpoints.
TIMEOUT = 120 + 10 * FAULTS_PER_MODE


def test_schedule_is_seeded_and_kills_stigmer_once():
    schedule = make_schedule(seed=SEED, count=FAULTS_PER_MODE)
    assert schedule == make_schedule(seed=SEED, count=FAULTS_PER_MODE)
    kinds = [f.kind for f in schedule]
    assert kinds.count(FaultKind.STIGMER_SIGKILL) == 1
    assert kinds.index(FaultKind.STIGMER_SIGKILL) < max(2, len(kinds) // 3)
    if len(schedule) >= 20:  # the CI size and up
        assert set(kinds) == set(FaultKind), "every kind of fault is exercised"
        # The leak check's baseline is warm, and most reconnection cycles come after it.
        assert kinds.index(FaultKind.STIGMER_SIGKILL) < baseline_index(schedule) < len(schedule) // 2


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("persisted", [True, False], ids=["temporal-persisted", "temporal-in-memory"])
def test_chaos_soak(
    persisted: bool, tmp_path: Path, temporal_dev_server_factory, tcp_proxy_factory, stigmer_server_factory
):
    temporal = temporal_dev_server_factory(persistent=persisted)
    proxy = tcp_proxy_factory(temporal.address, upstream_down="close" if persisted else "hold")
    stigmer = stigmer_server_factory(temporal=proxy.address, health_interval=1.0)
    mode = "persisted" if persisted else "memory"
    seed = SEED * 2 + (0 if persisted else 1)
    soak = Soak(
        mode=mode,
        seed=seed,
        schedule=make_schedule(seed=seed, count=FAULTS_PER_MODE),
        temporal=temporal,
        proxy=proxy,
        stigmer=stigmer,
    )
    result = soak.run()
    report = judge(result, persisted=persisted)
    table = report.table()
    (tmp_path / f"chaos-{mode}.txt").write_text(report.details() + "\n")
    print(f"\n{table}\n(written to {tmp_path / f'chaos-{mode}.txt'}; server log {stigmer.log_path})")
    assert report.passed, f"\n{table}"
