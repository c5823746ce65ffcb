"""Run every benchmark (or some) against one Temporal dev server and print their tables.

    python3 bench/run.py                   # the full run (~45 min on 2 cores; lb-recovery alone ~20)
    python3 bench/run.py --quick           # a short smoke run (~8 min), fewer repetitions
    python3 bench/run.py --only recovery   # one benchmark (repeatable: --only idle --only happy)
    python3 bench/run.py --markdown out.md # also write the tables and machine facts to a file

Tables go to stdout, progress to stderr. Everything listens on 127.0.0.1; every process started
is killed by PID when its benchmark ends, however it ends. Benchmarks are not tests: nothing
here fails on a missed target, it says so in the tables.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `bench`, `stigmer` and `tests.support` importable
    sys.path.insert(0, str(ROOT))

from bench import (  # noqa: E402
    cancel,
    client_overhead,
    detection,
    happy_path,
    idle,
    lb_recovery,
    machine,
    metrics_overhead,
    reconnect,
    recovery,
    split_roles,
    sporadic,
    store_backends,
)
from bench.harness import PATCH_ENV, Context  # noqa: E402
from bench.stats import Table  # noqa: E402
from stigmer.testing.temporal import TemporalDevServer  # noqa: E402

Benchmark = Callable[[Context], Awaitable[list[Table]]]

#: In the order they run: the restart-heavy ones first, the load that leaves a backlog last.
BENCHMARKS: dict[str, Benchmark] = {
    recovery.NAME: recovery.run,
    detection.NAME: detection.run,
    lb_recovery.NAME: lb_recovery.run,
    reconnect.NAME: reconnect.run,
    idle.NAME: idle.run,
    sporadic.NAME: sporadic.run,
    happy_path.NAME: happy_path.run,
    client_overhead.NAME: client_overhead.run,
    metrics_overhead.NAME: metrics_overhead.run,
    cancel.NAME: cancel.run,
    store_backends.NAME: store_backends.run,
    split_roles.NAME: split_roles.run,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="stigmer-py benchmarks (see docs/benchmarks.md)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and shorter windows (smoke run)")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), help="run only this benchmark")
    parser.add_argument("--reps", type=int, help="repetitions per measured scenario (overrides the defaults)")
    parser.add_argument("--markdown", type=Path, help="also write machine facts and tables to this file")
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir (logs, databases)")
    parser.add_argument(
        "--patch",
        default="",
        help="experiment: run every server with these proposed changes (comma-separated, see bench/patched_server.py)",
    )
    return parser.parse_args(argv)


async def run_all(args: argparse.Namespace, workdir: Path) -> list[Table]:
    names = args.only or list(BENCHMARKS)
    temporal = TemporalDevServer(db_filename=workdir / "temporal.db", log_path=workdir / "temporal.log")
    tables: list[Table] = []
    try:
        temporal.start()
        await temporal.wait_ready_async()
        ctx = Context(workdir=workdir, temporal=temporal, quick=args.quick, reps=args.reps)
        for name in names:
            if not temporal.is_running:  # a benchmark that failed half-way may have left it down
                temporal.start()
                await temporal.wait_ready_async()
            started = time.monotonic()
            try:
                tables += await BENCHMARKS[name](ctx)
            except Exception as err:  # report and go on: one broken benchmark must not hide the others
                traceback.print_exc()
                failed = Table(f"{name}: FAILED", ["error"])
                failed.add(f"{type(err).__name__}: {err}".replace("\n", " ")[:300])
                tables.append(failed)
            ctx.say(f"{name}: done in {time.monotonic() - started:.0f} s")
    finally:
        temporal.kill()
    return tables


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="stigmer-bench-"))
    if args.patch:
        os.environ[PATCH_ENV] = args.patch  # read by harness.start_stigmer
    started = time.monotonic()
    load_before = machine.loadavg()
    command = "python3 bench/run.py " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        tables = asyncio.run(run_all(args, workdir))
    finally:
        if args.keep:
            print(f"scratch dir kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    header = machine.header(command=command.strip(), elapsed=elapsed, load_before=load_before)
    if args.patch:
        header += f"- EXPERIMENT: all stigmer servers ran with patch(es) `{args.patch}` (bench/patched_server.py)\n"
    report = header + "\n" + "\n".join(t.render() for t in tables)
    print(report)
    if args.markdown is not None:
        args.markdown.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
