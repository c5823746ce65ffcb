"""The plain-SDK contender: one temporalio client and one worker in one process, nothing else.

No connection management at all, as a user would write it without stigmer: connect once with the
SDK's defaults, run a worker, start workflows directly. When Temporal restarts, whatever heals
is the SDK's own retrying (client calls retry for ~10 s; pollers retry for ever).

Run as ``python3 -m bench.plain_sdk --address HOST:PORT --queue Q`` (the driver does). It prints
JSON lines on stdout: ``{"event": "ready"}`` once the worker runs, then one ``cycle`` line per
``go CYCLE DEADLINE`` line read from stdin: a create retried every 50 ms until it succeeds, then
the wait for that workflow's result. EOF on stdin (the driver went away) ends the process, and so
does ``--max-lifetime``.

The driver side is :class:`PlainApp`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.plain_workflow import PlainEchoWorkflow, step

RETRY_EVERY = 0.05


def emit(**fields: Any) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def run_cycle(client: Any, *, queue: str, cycle: int, deadline: float) -> None:
    """Create (retrying every 50 ms) until Temporal takes it, then wait for COMPLETED."""
    end = time.monotonic() + deadline
    tries, error, created, handle = 0, "", None, None
    while time.monotonic() < end:
        tries += 1
        try:
            handle = await asyncio.wait_for(
                client.start_workflow(
                    PlainEchoWorkflow.run,
                    f"cycle {cycle}",
                    id=f"bench-plain-{cycle}-{uuid.uuid4().hex}",
                    task_queue=queue,
                ),
                timeout=max(0.01, end - time.monotonic()),
            )
            created = time.time()
            break
        except Exception as err:  # any failure: retry, as a user's loop would
            error = f"{type(err).__name__}: {err}"[:200]
            await asyncio.sleep(RETRY_EVERY)
    completed = None
    if handle is not None:
        try:
            await asyncio.wait_for(handle.result(), timeout=max(0.01, end - time.monotonic()))
            completed = time.time()
        except Exception as err:
            error = f"{type(err).__name__}: {err}"[:200]
    emit(event="cycle", cycle=cycle, created=created, completed=completed, tries=tries, error=error)


def _stdin_lines() -> asyncio.Queue[str]:
    """stdin lines, read by a daemon thread (a blocked read must never hold up the exit); "" at EOF."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str] = asyncio.Queue()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, "")

    threading.Thread(target=read, name="stdin", daemon=True).start()
    return queue


async def main(address: str, queue: str, max_lifetime: float) -> None:
    from temporalio.client import Client
    from temporalio.worker import Worker

    client = await Client.connect(address)
    worker = Worker(client, task_queue=queue, workflows=[PlainEchoWorkflow], activities=[step])
    cycles: set[asyncio.Task[None]] = set()
    lines = _stdin_lines()
    async with worker:
        emit(event="ready", pid=os.getpid())
        end = time.monotonic() + max_lifetime
        while time.monotonic() < end:
            try:
                line = await asyncio.wait_for(lines.get(), timeout=end - time.monotonic())
            except TimeoutError:
                break
            words = line.split()
            if not words or words[0] == "quit":
                break  # EOF or asked to stop
            if words[0] == "go":
                task = asyncio.create_task(
                    run_cycle(client, queue=queue, cycle=int(words[1]), deadline=float(words[2]))
                )
                cycles.add(task)
                task.add_done_callback(cycles.discard)
        for task in cycles:
            task.cancel()


class PlainApp:
    """Driver side: spawn the contender, hand it cycles, read its answers, kill it by PID."""

    def __init__(self, *, address: str, queue: str, log: Path, max_lifetime: float = 1800.0) -> None:
        self.address = address
        self.queue = queue
        self._max_lifetime = max_lifetime
        self._log = log
        self.proc: asyncio.subprocess.Process | None = None
        self.chatter: list[str] = []

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, *, timeout: float = 30.0) -> None:  # noqa: ASYNC109
        from bench.harness import ROOT

        with self._log.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.plain_sdk", "--address", self.address, "--queue", self.queue,
                "--max-lifetime", str(self._max_lifetime),
                cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=log,
                start_new_session=True,
            )  # fmt: skip
        ready = await self.read(timeout=timeout)
        if ready.get("event") != "ready":
            raise RuntimeError(f"plain SDK contender did not start: {ready}")

    async def read(self, *, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        """The next JSON line; anything else the SDK printed on stdout is kept in ``chatter``."""
        assert self.proc is not None and self.proc.stdout is not None
        end = time.monotonic() + timeout
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout=max(0.01, end - time.monotonic()))
            if not line:
                raise RuntimeError(f"plain SDK contender exited (code {self.proc.returncode})")
            if line.startswith(b"{"):
                answer: dict[str, Any] = json.loads(line)
                return answer
            self.chatter.append(line.decode(errors="replace").rstrip())

    def go(self, cycle: int, *, deadline: float) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(f"go {cycle} {deadline}\n".encode())

    def kill(self) -> None:
        """SIGKILL its process group (it leads one); safe to call twice."""
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--max-lifetime", type=float, default=1800.0)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(args.address, args.queue, args.max_lifetime))
