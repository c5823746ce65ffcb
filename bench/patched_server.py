"""`stigmer server start` with proposed changes applied in-process: for experiments only.

    STIGMER_BENCH_PATCH=retry,keepalive python3 bench/patched_server.py server start ...

``run.py --patch ...`` starts every stigmer server this way, so a proposed fix can be measured
side by side with the shipped code before anyone edits the project. Patches:

- ``retry``: dial Temporal with a short client retry policy (the SDK's default retries a refused
  call for up to 10 s, so a create during an outage hangs that long before the connection hears
  of it). Long polls keep their own policy in the SDK core and are unaffected.
- ``keepalive``: HTTP/2 keepalive every 1 s with a 1 s timeout (shipped: 5 s / 3 s), so that a
  silently dead path fails the calls in flight within ~2 s.
- ``passthrough``: declare the workflows' pure helper modules as sandbox passthrough modules on
  the workers (see PASSTHROUGH below).
- ``noexec``: not a fix but a control: the agent execution worker polls another queue, so
  nothing created is executed in the server (executions stay PENDING). Separates the cost of the
  API path from the cost of running workflows in the same process.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENV = "STIGMER_BENCH_PATCH"
PATCHES = ("retry", "keepalive", "passthrough", "noexec")
#: Pure helper modules the workflows import. workflows.py imports them as ``from stigmer.temporal
#: import names, ...`` inside imports_passed_through(), but a submodule named in a from-list is
#: loaded through importlib's own path, so the sandbox re-executes (and recompiles) all three for
#: every new workflow instance -- on the event loop, since the SDK creates workflow instances
#: there (measured with py-spy: ~13 ms per new workflow, half of the server's CPU time).
PASSTHROUGH = ("stigmer.temporal.names", "stigmer.temporal.templating", "stigmer.temporal.workflowdoc")

#: The proposed client retry policy: ~1 s of retries (4 tries) instead of up to 10 s.
RETRY = {"initial_interval_millis": 100, "multiplier": 2.0, "max_interval_millis": 400,
         "max_elapsed_time_millis": 1000, "max_retries": 4}  # fmt: skip


def apply(names: list[str]) -> None:
    unknown = set(names) - set(PATCHES)
    if unknown:
        raise SystemExit(f"{ENV}: unknown patch(es) {sorted(unknown)}; known: {', '.join(PATCHES)}")
    if "retry" in names:
        from temporalio.client import Client
        from temporalio.service import RetryConfig

        original = Client.connect

        async def connect(*args: Any, **kwargs: Any) -> Client:
            kwargs.setdefault("retry_config", RetryConfig(**RETRY))
            return await original(*args, **kwargs)

        Client.connect = connect  # type: ignore[assignment,method-assign]
    if "keepalive" in names:
        from stigmer.config import Config

        settings = Config.connection_settings

        def connection_settings(self: Config) -> Any:
            return dataclasses.replace(settings(self), keepalive_interval=1.0, keepalive_timeout=1.0)

        Config.connection_settings = connection_settings  # type: ignore[method-assign]
    if "passthrough" in names or "noexec" in names:
        _patch_workers(passthrough="passthrough" in names, noexec="noexec" in names)


def _patch_workers(*, passthrough: bool, noexec: bool) -> None:
    from temporalio.worker import Worker
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

    import stigmer.temporal.workers as workers

    runner = SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH))

    def worker(*args: Any, **kwargs: Any) -> Worker:
        if passthrough:
            kwargs.setdefault("workflow_runner", runner)
        if noexec and any(getattr(w, "__name__", "") == "AgentExecutionWorkflow" for w in kwargs["workflows"]):
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
