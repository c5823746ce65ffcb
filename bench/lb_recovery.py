"""Benchmark 7: recovery and detection that need no port edge (issue 12), three topologies at once.

One Temporal (persistent db) is SIGKILLed, stays down for 5, 40 or 70 s (and once 10 min in a
full run; ``--quick``: 5 and 40 s, ``--reps`` times), and is started again. Watching it at the same time:

- three topologies: ``direct`` (its port refuses while it is down), behind a TcpProxy that
  ``closes`` (accepts, then resets: HAProxy/envoy with no healthy backend) and one that
  ``holds`` (accepts, then stays silent), both always accepting TCP;
- per topology: an idle stigmer server (defaults, no traffic at all), a busy one (a create
  every 50 ms from the kill on, as benchmark 1 does), and the legacy design (Go server: retry
  on the 15 s health tick only), idle;
- one more idle server behind a holding proxy of its own, for the cost of an outage: its CPU
  and how many connections that carried data (hellos, gRPC calls; the TCP hint sends nothing) it made
  per second while Temporal was down.

Measured from the wall time Temporal answered DescribeNamespace again (probed every 10 ms) to
the server's own transition into CONNECTED (idle) or the first successful create (busy), and
from the kill to its CONNECTED -> UNHEALTHY transition (detection, idle).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from dataclasses import dataclass, field

from bench.harness import Context, Stigmer, StigmerApi, start_stigmer, transitions_after, wait_answering, wall
from bench.procs import sample
from bench.recovery import create_until_ok
from bench.stats import Summary, Table, fmt_ratio, fmt_seconds, ratio, verdict
from tests.support.tcp_proxy import TcpProxy

NAME = "lb-recovery"
TOPOLOGIES = ("direct", "proxy that closes", "proxy that holds")
IDLE, BUSY, LEGACY = "idle", "busy (first create)", "legacy idle (Go design)"
LONG = 600.0
#: After Temporal answers, each server is given this long (the legacy tick is 15 s).
BUDGET = 40.0
#: The cost of an outage is measured from this far into it.
COST_FROM = 10.0


@dataclass
class Watched:
    topology: str
    role: str
    server: Stigmer
    api: StigmerApi


@dataclass
class Results:
    recovery: dict[tuple[str, str, float], list[float | None]] = field(default_factory=dict)
    detection: dict[str, list[float | None]] = field(default_factory=dict)
    cost: dict[float, list[tuple[float, float]]] = field(default_factory=dict)  # outage -> (cpu %, rpc/s)
    #: Outages a legacy server never noticed (the SDK's own retries rode them out): no recovery to time.
    unnoticed: dict[tuple[str, str, float], int] = field(default_factory=dict)


async def connected_at(api: StigmerApi, *, since: float, budget: float) -> float | None:
    end = time.monotonic() + budget
    while time.monotonic() < end:
        with contextlib.suppress(Exception):
            for t in transitions_after(await api.status(), since):
                if t.dest == "CONNECTED":
                    return wall(t.at)
        await asyncio.sleep(0.05)
    return None


async def left_connected(api: StigmerApi, *, since: float) -> bool:
    return any(t.source == "CONNECTED" for t in transitions_after(await api.status(), since))


async def unhealthy_at(api: StigmerApi, *, since: float, budget: float) -> float | None:
    end = time.monotonic() + budget
    while time.monotonic() < end:
        with contextlib.suppress(Exception):
            for t in transitions_after(await api.status(), since):
                if t.source == "CONNECTED" and t.dest == "UNHEALTHY":
                    return wall(t.at)
        await asyncio.sleep(0.05)
    return None


def outages(ctx: Context) -> list[float]:
    reps = ctx.repetitions(full=3, quick=1)
    short = [o for _ in range(reps) for o in ((5.0, 40.0) if ctx.quick else (5.0, 40.0, 70.0))]
    return short + ([LONG] if not ctx.quick else [])


async def run(ctx: Context) -> list[Table]:
    results = Results()
    temporal = ctx.temporal
    with contextlib.ExitStack() as stack:
        proxies = {
            "direct": None,
            "proxy that closes": TcpProxy(target=temporal.address),
            "proxy that holds": TcpProxy(target=temporal.address, upstream_down="hold"),
        }
        cost_proxy = TcpProxy(target=temporal.address, upstream_down="hold")
        for proxy in [*proxies.values(), cost_proxy]:
            if proxy is not None:
                stack.callback(proxy.close)
                proxy.start()
        watched: list[Watched] = []
        for topology, proxy in proxies.items():
            target = temporal.address if proxy is None else proxy.address
            for role in (IDLE, BUSY, LEGACY):
                name = f"lb-{topology.split()[-1]}-{role.split()[0]}"
                server = await asyncio.to_thread(start_stigmer, stack, workdir=ctx.workdir, name=name,
                                                 temporal=target, legacy=role == LEGACY)  # fmt: skip
                watched.append(Watched(topology, role, server, StigmerApi(server.address)))
        cost = await asyncio.to_thread(start_stigmer, stack, workdir=ctx.workdir, name="lb-cost",
                                       temporal=cost_proxy.address)  # fmt: skip
        cost_api = StigmerApi(cost.address)
        try:
            plan = outages(ctx)
            ctx.say(f"{NAME}: {len(watched) + 1} servers, outages {', '.join(f'{o:g}' for o in plan)} s "
                    f"(~{(sum(plan) + 30 * len(plan)) / 60:.0f} min)")  # fmt: skip
            for n, outage in enumerate(plan):
                await cycle(ctx, n, outage, watched, cost, cost_api, cost_proxy, results)
        finally:
            for w in watched:
                await w.api.close()
            await cost_api.close()
    return tables(results)


async def cycle(
    ctx: Context,
    n: int,
    outage: float,
    watched: list[Watched],
    cost: Stigmer,
    cost_api: StigmerApi,
    cost_proxy: TcpProxy,
    results: Results,
) -> None:
    for api in [*(w.api for w in watched), cost_api]:
        await api.wait_state("CONNECTED", timeout=120)
    await asyncio.sleep(1.0)  # a quiet moment: every server settled on its new connection
    killed = time.time()
    await asyncio.to_thread(ctx.temporal.kill, signal.SIGKILL)
    busy = {
        id(w): asyncio.create_task(create_until_ok(w.api, message=f"lb {n}", budget=outage + BUDGET))
        for w in watched
        if w.role == BUSY
    }
    idle_fast = [w for w in watched if w.role == IDLE]
    detect = [asyncio.create_task(unhealthy_at(w.api, since=killed, budget=20)) for w in idle_fast]
    # The cost window, outages of 40 s and more: from 10 s in (detection and the fast first
    # backoff retries over: what a long outage costs) to the restart.
    lead = COST_FROM if outage >= 40 else outage
    await asyncio.sleep(lead)
    before, rpcs_before, t0 = sample(cost.pid, at=time.monotonic()), cost_proxy.connections_with_data, time.monotonic()
    await asyncio.sleep(outage - lead)
    after, rpcs_after, t1 = sample(cost.pid, at=time.monotonic()), cost_proxy.connections_with_data, time.monotonic()
    if t1 - t0 > 1.0:
        cpu = 100.0 * (after.cpu_seconds - before.cpu_seconds) / (t1 - t0)
        results.cost.setdefault(outage, []).append((cpu, (rpcs_after - rpcs_before) / (t1 - t0)))
    ctx.temporal.start()
    up = await wait_answering(ctx.temporal.address, timeout=60)
    for w, found in zip(idle_fast, await asyncio.gather(*detect), strict=True):
        results.detection.setdefault(w.topology, []).append(None if found is None else found - killed)
    idle = [w for w in watched if w.role != BUSY]
    back = await asyncio.gather(*(connected_at(w.api, since=killed, budget=BUDGET) for w in idle))
    for w, at in zip(idle, back, strict=True):
        key = (w.topology, w.role, outage)
        if at is None and w.role == LEGACY and not await left_connected(w.api, since=killed):
            results.unnoticed[key] = results.unnoticed.get(key, 0) + 1
            continue
        results.recovery.setdefault(key, []).append(None if at is None else at - up)
    for w in watched:
        if w.role == BUSY:
            got = await busy[id(w)]
            key = (w.topology, w.role, outage)
            results.recovery.setdefault(key, []).append(None if got.created is None else got.created - up)
    ctx.say(f"{NAME}: outage {n + 1} ({outage:g} s): " + "; ".join(
        f"{t.split()[-1]} {r.split()[0]} {fmt_seconds(v[-1]) if v[-1] is not None else 'never'}"
        for (t, r, o), v in results.recovery.items() if o == outage
    ))  # fmt: skip


def tables(results: Results) -> list[Table]:
    table = Table(
        "7. Recovery with no port edge: Temporal answers -> CONNECTED (idle) / first create (busy)",
        ["outage", "topology", "contender", "n (missed)", "p50", "p95", "worst", "target", "verdict"],
    )
    keys = sorted({*results.recovery, *results.unnoticed}, key=lambda k: (k[2], TOPOLOGIES.index(k[0]), k[1]))
    for key in keys:
        topology, role, outage = key
        s = Summary.of(results.recovery.get(key, []))
        target = "-" if role == LEGACY else "p95 <= 1 s"
        ok = None if role == LEGACY or s.n == 0 else (s.p95 <= 1.0 and s.missing == 0)
        unnoticed = f", {results.unnoticed[key]} unnoticed" if key in results.unnoticed else ""
        table.add(f"{outage:g} s", topology, role, f"{s.n} ({s.missing}{unnoticed})", fmt_seconds(s.median),
                  fmt_seconds(s.p95), fmt_seconds(s.high), target, verdict(ok))  # fmt: skip
    table.notes.append(
        "unnoticed: the legacy server never left CONNECTED (the SDK's retries rode the outage out); "
        "those outages have no recovery to time."
    )
    fast = Summary.of([v for (_, r, _), vs in results.recovery.items() if r == IDLE for v in vs])
    legacy = Summary.of([v for (_, r, _), vs in results.recovery.items() if r == LEGACY for v in vs])
    gain = ratio(legacy.median, fast.median)
    table.notes.append(
        f"idle, all outages and topologies: p50 {fmt_seconds(fast.median)} vs legacy "
        f"{fmt_seconds(legacy.median)}: {fmt_ratio(gain)} (target >= 10x: {verdict(gain >= 10)})"
    )
    detection = Table(
        "7. Idle detection: SIGKILL -> UNHEALTHY, no traffic",
        ["topology", "n (missed)", "p50", "worst", "target", "verdict"],
    )
    for topology, values in results.detection.items():
        s = Summary.of(values)
        ok = None if s.n == 0 else (s.high <= 3.0 and s.missing == 0)
        detection.add(topology, f"{s.n} ({s.missing})", fmt_seconds(s.median), fmt_seconds(s.high), "<= 3 s",
                      verdict(ok))  # fmt: skip
    cost = Table(
        f"7. Cost of an outage (idle server behind a holding proxy, from {COST_FROM:g} s into it)",
        ["outage", "n", "CPU % of a core (mean)", "connections with data / s (mean)", "target", "verdict"],
    )
    for outage, rows in sorted(results.cost.items()):
        cpu = sum(c for c, _ in rows) / len(rows)
        rate = sum(r for _, r in rows) / len(rows)
        cost.add(f"{outage:g} s", len(rows), f"{cpu:.2f}", f"{rate:.2f}", "CPU < 1 %, <= 2 /s",
                 verdict(cpu < 1.0 and rate <= 2.0))  # fmt: skip
    cost.notes.append(
        "connections with data: accepted connections whose client sent bytes -- each comeback "
        "question (a hello, then a health RPC only if something replied) and each attempt at the "
        "backoff (two SDK dials); an upper bound on probe RPCs, which a dead balancer never draws. "
        "Bare TCP hints send nothing and are not counted."
    )
    return [table, detection, cost]
