"""The benchmarks stay runnable: every bench module imports, and the statistics and table code
that turns measurements into docs/benchmarks.md works. Nothing here times anything."""

from __future__ import annotations

import importlib
import math
import os

import pytest

from bench import (
    cancel,
    client_overhead,
    detection,
    happy_path,
    idle,
    lb_recovery,
    metrics_overhead,
    procs,
    reconnect,
    recovery,
    split_roles,
    sporadic,
    stats,
    store_backends,
)
from bench.procs import ProcSample, Usage

MODULES = [
    "bench.run", "bench.harness", "bench.stats", "bench.procs", "bench.machine", "bench.recovery",
    "bench.detection", "bench.happy_path", "bench.idle", "bench.reconnect", "bench.plain_sdk",
    "bench.plain_workflow", "bench.load_client", "bench.patched_server", "bench.sporadic", "bench.lb_recovery",
    "bench.client_overhead", "bench.legacy", "bench.cancel", "bench.metrics_overhead",
    "bench.store_backends", "bench.split_roles",
]  # fmt: skip


@pytest.mark.parametrize("name", MODULES)
def test_module_imports(name: str) -> None:
    importlib.import_module(name)


def test_every_benchmark_is_registered_under_its_name() -> None:
    run = importlib.import_module("bench.run")
    modules = (
        recovery, detection, happy_path, idle, reconnect, sporadic, lb_recovery, client_overhead, cancel,
        metrics_overhead, store_backends, split_roles,
    )  # fmt: skip
    assert set(run.BENCHMARKS) == {m.NAME for m in modules}
    args = run.parse_args(["--quick", "--only", "idle", "--only", "happy"])
    assert args.quick and args.only == ["idle", "happy"]
    with pytest.raises(SystemExit):
        run.parse_args(["--only", "nonsense"])


def test_percentile_interpolates_between_order_statistics() -> None:
    values = [float(v) for v in range(1, 11)]  # 1..10
    assert stats.percentile(values, 50) == 5.5
    assert stats.percentile(values, 0) == 1 and stats.percentile(values, 100) == 10
    assert stats.percentile(values, 95) == pytest.approx(9.55)
    assert stats.percentile([3.0], 95) == 3.0
    assert math.isnan(stats.percentile([], 50))
    with pytest.raises(ValueError):
        stats.percentile(values, 101)


def test_summary_counts_missing_samples_apart() -> None:
    summary = stats.Summary.of([0.2, None, 0.4, float("nan")])
    assert (summary.n, summary.missing) == (2, 2)
    assert summary.median == pytest.approx(0.3) and summary.high == 0.4
    empty = stats.Summary.of([None])
    assert empty.n == 0 and empty.missing == 1 and math.isnan(empty.median)


def test_formatters() -> None:
    assert stats.fmt_seconds(0.0123) == "12.3 ms"
    assert stats.fmt_seconds(0.43) == "0.43 s"
    assert stats.fmt_seconds(12.34) == "12.3 s"
    assert stats.fmt_seconds(float("nan")) == "-"
    assert stats.fmt_ms(0.0021) == "2.10 ms"
    assert stats.fmt_ratio(stats.ratio(3.0, 2.0)) == "1.50x"
    assert stats.fmt_ratio(stats.ratio(1.0, 0.0)) == "-"
    assert stats.verdict(True) == "met" and stats.verdict(False) == "**missed**" and stats.verdict(None) == "n/a"


def test_table_renders_an_aligned_markdown_pipe_table() -> None:
    table = stats.Table("A title", ["name", "value"])
    table.add("short", 1)
    table.add("a longer name", "2.00 s")
    table.notes.append("a note")
    lines = table.render().splitlines()
    assert lines[0] == "### A title"
    assert lines[2] == "| name          | value  |"
    assert lines[3] == "|---------------|--------|"
    assert lines[4] == "| short         | 1      |"
    assert lines[-1] == "- a note"
    assert len({len(line) for line in lines[2:6]}) == 1  # every row as wide as the header
    with pytest.raises(ValueError):
        table.add("too", "many", "cells")


def test_proc_sample_reads_this_process() -> None:
    first = procs.sample(os.getpid(), at=0.0)
    assert first.rss_bytes > 0 and first.cpu_seconds > 0
    use = procs.usage([ProcSample(0.0, 100 * 2**20, 1.0), ProcSample(10.0, 120 * 2**20, 1.5)])
    assert use == Usage(seconds=10.0, cpu_percent=5.0, rss_mean_mib=110.0, rss_max_mib=120.0)
    with pytest.raises(ValueError):
        procs.usage([first])


def test_result_tables_from_synthetic_measurements() -> None:
    rendered = "".join(t.render() for t in recovery.tables(
        {recovery.FAST: [(0.2, 0.4)] * 3, recovery.LEGACY: [(8.0, 8.1), (None, None), (9.0, 9.2)],
         recovery.PLAIN: [(1.0, 1.5)] * 3},
        [2.0, 3.0, 4.0], reconnected={recovery.FAST: 3, recovery.LEGACY: 1},
    ))  # fmt: skip
    assert "| stigmer-py (defaults)" in rendered and "3 (1)" in rendered and "42.50x" in rendered
    found = {("SIGKILL", detection.QUIET): [9.0, None], ("black hole", detection.BUSY): [1.2, 1.3]}
    assert "**missed**" in detection.tables(found)[0].render()  # a missed detection fails the target
    usage = Usage(seconds=60, cpu_percent=0.2, rss_mean_mib=90, rss_max_mib=95)
    assert "| met" in idle.tables({"stigmer-py, Temporal up": usage}, window=60, down_state="UNHEALTHY")[0].render()
    rows = [{"connected": 0.2, "polling": 0.3, "up_to_connected": 0.25, "failed_attempts": 1}]
    assert "0.20 s" in reconnect.tables(rows)[0].render()
    load = {"elapsed": 2.0, "latencies": [0.01] * 10, "failures": 0}
    results = {(config, phase, mode): load for config in (happy_path.EXECUTING, happy_path.CONTROL)
               for phase in ("sequential", "concurrent") for mode in (happy_path.STIGMER, happy_path.RAW)}  # fmt: skip
    table, targets = happy_path.tables(results, drained=1.0, sequential=10, concurrent=10)
    assert table.render().count("| 5/s") == 4 and "1.00x (1.00x)" in targets.render()


def test_happy_path_alternates_contenders_in_abba_chunks() -> None:
    plan = happy_path.schedule(sequential=500, concurrent=2000, in_flight=50, chunks=2)
    sequential = [c.mode for c in plan if c.phase == "sequential"]
    assert sequential == [happy_path.STIGMER, happy_path.RAW, happy_path.RAW, happy_path.STIGMER]
    for phase, total in (("sequential", 500), ("concurrent", 2000)):
        for mode in (happy_path.STIGMER, happy_path.RAW):
            assert sum(c.count for c in plan if c.phase == phase and c.mode == mode) == total


def test_sporadic_table_judges_each_gap_against_the_plain_sdk() -> None:
    fast = {gap: [0.05, 0.06] for gap in sporadic.GAPS}
    fast[4.0] = [0.05, 10.3]  # a lost workflow task
    results = {
        sporadic.FAST: fast,
        sporadic.LEGACY: {gap: [0.05, None] for gap in sporadic.GAPS},
        sporadic.PLAIN: {gap: [0.04, 0.05] for gap in sporadic.GAPS},
    }
    firsts = {name: {sporadic.COLD: 0.4, sporadic.AFTER: 1.5} for name in results}
    (table,) = sporadic.tables(results, firsts)
    verdicts = {(row[0], row[1]): row[-1] for row in table.rows}
    assert verdicts[("2 s", sporadic.FAST)] == "met"
    assert verdicts[("4 s", sporadic.FAST)] == "**missed**"
    assert verdicts[("2 s", sporadic.LEGACY)] == "**missed**"  # a missing sample is a miss
    assert verdicts[("2 s", sporadic.PLAIN)] == "n/a"
    assert verdicts[(sporadic.COLD, sporadic.FAST)] == "met"
    assert verdicts[(sporadic.AFTER, sporadic.FAST)] == "**missed**"


def test_lb_recovery_tables_judge_p95_detection_and_cost() -> None:
    results = lb_recovery.Results()
    results.recovery[("proxy that holds", lb_recovery.IDLE, 40.0)] = [0.2, 0.3, 4.0]  # one waited
    results.recovery[("direct", lb_recovery.IDLE, 40.0)] = [0.1, 0.1, 0.2]
    results.recovery[("direct", lb_recovery.LEGACY, 40.0)] = [5.0, 9.0, 12.0]
    results.detection["proxy that closes"] = [0.5, 4.0]
    results.cost[40.0] = [(0.5, 1.9), (0.7, 2.1)]
    recovery, detection, cost = lb_recovery.tables(results)
    verdicts = {(row[1], row[2]): row[-1] for row in recovery.rows}
    assert verdicts[("proxy that holds", lb_recovery.IDLE)] == "**missed**"
    assert verdicts[("direct", lb_recovery.IDLE)] == "met"
    assert verdicts[("direct", lb_recovery.LEGACY)] == "n/a"
    assert "45.00x (target >= 10x: met)" in recovery.notes[1]  # legacy p50 9 s / ours 0.2 s (all idle samples)
    assert detection.rows[0][-1] == "**missed**"
    assert cost.rows[0][-1] == "met"  # means: CPU 0.6 %, 2.0 RPC/s


def test_the_metrics_table_says_what_the_metrics_cost() -> None:
    """bench/metrics_overhead.py's table from made-up chunks: +1 % p50 meets the 2 % goal."""
    chunk = {"elapsed": 1.0, "failures": 0}
    results = {
        ("sequential", "off"): {**chunk, "latencies": [0.010] * 9},
        ("sequential", "on"): {**chunk, "latencies": [0.0101] * 9},
        ("concurrent", "off"): {**chunk, "latencies": [0.01] * 500},
        ("concurrent", "on"): {**chunk, "latencies": [0.01] * 490},
    }
    rendered = metrics_overhead.table(results, scrapes=[0.002, 0.003], sizes=[9000, 9100]).render()
    assert "+1.0 % (goal <= +2 %: met)" in rendered and "0.98x" in rendered
    assert "2 scrapes" in rendered and "8.9 KiB" in rendered
