"""Executions a few seconds apart start at once (issue 19's regression test).

With an HTTP/2 keepalive faster than the frontend allows (1 s against its 10 s minimum), the
frontend closed the workers' idle connections with GOAWAY ``too_many_pings`` every few seconds,
and a workflow task handed to a long poll on a closing connection was lost until its 10 s task
timeout: 1 execution in 2-5 waited 10-20 s before it started. Back-to-back creates never showed it.
Product defaults here (only the task queues are the test's own), with the real dev server logging
its transport so that a refused ping is seen, not guessed.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from pathlib import Path

import pytest

from stigmer.temporal.connection import ConnectionSettings
from stigmer.temporal.names import TaskQueues
from stigmer.testing.eventually import eventually
from stigmer.testing.factories import TemporalDevServerFactory
from tests.integration.connection_rig import connection_rig

pytestmark = pytest.mark.temporal

SAMPLES = 10
#: Idle time between two executions: past the 2-3 s in which 1 s pings drew a GOAWAY.
GAPS = (2.5, 3.5, 4.5)
#: Far below the workflow task timeout (10 s): only a lost task can break it.
START_BOUND = 3.0


async def test_executions_at_idle_gaps_start_at_once(
    temporal_dev_server_factory: TemporalDevServerFactory, tmp_path: Path
) -> None:
    temporal = temporal_dev_server_factory(transport_log=True)
    settings = ConnectionSettings(host_port=temporal.address, queues=TaskQueues.with_suffix(uuid.uuid4().hex[:8]))
    rng = random.Random(19)
    waits: list[float] = []
    async with connection_rig(settings, tmp_path) as rig:
        await eventually(lambda: rig.state == "CONNECTED", timeout=30, what="CONNECTED")
        for n in range(SAMPLES):
            # The scenario itself, not a wait for a condition: the connection sits idle this long.
            await asyncio.sleep(rng.choice(GAPS))
            execution_id = await rig.run_agent_execution(f"sporadic {n}", timeout=30.0)
            record = rig.store.get_agent_execution(execution_id)
            assert record.started_at is not None
            waits.append(record.started_at - record.created_at)
    assert max(waits) < START_BOUND, [f"{w:.2f}" for w in waits]
    assert temporal.too_many_pings() == 0, "a client of ours pinged faster than the frontend allows"
