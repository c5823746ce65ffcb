"""ClientReaper: collects garbage until every dropped client is gone, then stops (issue 18 / soak)."""

from __future__ import annotations

import gc

from stigmer.temporal.connection.clients import ClientReaper, TemporalClients
from stigmer.testing.eventually import eventually


class CyclicClient:
    """Like temporalio's Client: it and its implementation refer to each other."""

    def __init__(self) -> None:
        self.impl = {"client": self}


async def test_collects_until_what_held_the_clients_lets_go() -> None:
    reaper = ClientReaper(first_delay=0.01, max_delay=0.02)
    gc.disable()
    try:
        generation = TemporalClients(workers=CyclicClient(), api=CyclicClient())  # type: ignore[arg-type]
        reaper.dropped(generation)
        holder = [generation]  # an old worker still shutting down, say
        del generation
        reaper.soon()
        await eventually(lambda: reaper.collections >= 3, timeout=5, what="collections while still referenced")
        assert reaper.alive == 2
        holder.clear()  # the cycle is garbage now: only a collection frees it
        await eventually(lambda: reaper.alive == 0, timeout=5, what="the clients collected")
        done = reaper.collections
        await eventually(lambda: not reaper.scheduled, timeout=5, what="the reaper to stop")
        assert reaper.collections == done  # nothing left to wait for: no more collections
    finally:
        gc.enable()
        reaper.close()


async def test_the_same_client_twice_counts_once_and_close_stops_it() -> None:
    reaper = ClientReaper(first_delay=10.0)
    client = CyclicClient()
    reaper.dropped(TemporalClients(workers=client, api=client))  # type: ignore[arg-type]
    assert reaper.alive == 1
    reaper.soon()
    reaper.close()
    reaper.soon()  # after close: nothing is scheduled
    assert not reaper.scheduled and reaper.collections == 0
