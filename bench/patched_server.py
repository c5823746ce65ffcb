"""`stigmer server start` with proposed changes applied in-process: for experiments only.

    STIGMER_BENCH_PATCH=noexec python3 bench/patched_server.py server start ...

``run.py --patch ...`` starts every stigmer server this way, so that a proposed change can be
measured side by side with the shipped code before anyone edits the project. The first three
experiments run this way (``retry``, ``keepalive``, ``passthrough``) were measured, then shipped
(see docs/benchmarks.md); what is left:

- ``switch``: ``sys.setswitchinterval(0.001)`` (``STIGMER_BENCH_SWITCH`` overrides): the API's
  thread waits at most ~1 ms instead of ~5 ms for the GIL while the workers' thread computes.
- ``legacy``: not a proposal but a contender: the original Go server's reconnection design
  (bench/legacy.py), which the product no longer carries.
- ``noexec``: not a fix but a control: the agent execution worker polls another queue, so
  nothing created is executed in the server (executions stay PENDING). Separates the cost of the
  API path from the cost of running workflows in the same process.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENV = "STIGMER_BENCH_PATCH"
PATCHES = ("legacy", "noexec", "switch")


def apply(names: list[str]) -> None:
    unknown = set(names) - set(PATCHES)
    if unknown:
        raise SystemExit(f"{ENV}: unknown patch(es) {sorted(unknown)}; known: {', '.join(PATCHES)}")
    if "legacy" in names:
        from bench import legacy

        legacy.install()
    if "noexec" in names:
        _patch_workers()
    if "switch" in names:
        # The GIL's switch interval (5 ms by default): how long the API's thread can wait for the
        # GIL while the workers' thread computes.
        sys.setswitchinterval(float(os.environ.get("STIGMER_BENCH_SWITCH", "0.001")))


def _patch_workers() -> None:
    from temporalio.worker import Worker

    import stigmer.temporal.workers as workers

    def worker(*args: Any, **kwargs: Any) -> Worker:
        if any(getattr(w, "__name__", "") == "AgentExecutionWorkflow" for w in kwargs["workflows"]):
            kwargs["task_queue"] += "-not-polled"
        return Worker(*args, **kwargs)

    # build_workers looks Worker up in its module at call time.
    workers.Worker = worker  # type: ignore[assignment,misc]


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    apply([name for name in os.environ.get(ENV, "").split(",") if name])
    from stigmer.entry import main

    sys.argv[0] = "stigmer"
    sys.exit(main())
