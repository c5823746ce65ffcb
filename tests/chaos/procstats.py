"""What the stigmer server process holds, read from /proc, and when that counts as a leak."""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProcStats:
    """What a process holds, read from /proc: open fds (by kind) and threads (by name)."""

    fds: int
    threads: int
    fd_kinds: collections.Counter[str]
    thread_names: collections.Counter[str]
    #: asyncio tasks in the server's loop (from GetStatus' process stats); -1 when not read.
    tasks: int = -1

    @classmethod
    def read(cls, pid: int) -> ProcStats:
        kinds: collections.Counter[str] = collections.Counter()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:  # closed while we looked
                continue
            kinds[target.split(":[")[0] if ":[" in target else Path(target).name] += 1
        status = Path(f"/proc/{pid}/status").read_text()
        threads = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))
        names: collections.Counter[str] = collections.Counter()
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                names[Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()] += 1
            except OSError:  # the thread ended while we looked
                continue
        return cls(fds=sum(kinds.values()), threads=threads, fd_kinds=kinds, thread_names=names)

    def short(self) -> str:
        return f"{self.fds} fds, {self.threads} threads, {self.tasks} asyncio tasks"


#: Threads that exist once per running worker (Linux cuts names to 15 characters): the core's
#: "workflow-processing" and "temporal-real-sysinfo" threads. Old workers that are not shut down
#: properly keep theirs for good, so these must come back exactly.
PER_WORKER_THREADS = ("workflow-proces", "temporal-real-s")
#: Every other thread belongs to a pool that keeps its high-water mark: tokio's blocking pool
#: (idle threads wait 10 s for work, and the 1 s health tick keeps giving them some; seen parked
#: in Condvar::wait_until by gdb) and the interpreter's executors (6 threads at most on 2 cores).
#: Measured: +2 to +6 over the baseline, also after 60 faults. A leak of one thread per
#: reconnection would exceed it within a dozen faults.
POOL_SLACK = 10


def resource_problems(base: ProcStats, now: ProcStats) -> list[str]:
    """What has not come back to `base`; empty when nothing leaked."""
    problems = []
    if base.tasks >= 0 and now.tasks > base.tasks:
        problems.append(f"asyncio tasks {base.tasks} -> {now.tasks}")
    if now.fds > base.fds:
        problems.append(f"fds {base.fds} -> {now.fds}: more {dict(now.fd_kinds - base.fd_kinds)}")
    for name in PER_WORKER_THREADS:
        if now.thread_names[name] > base.thread_names[name]:
            problems.append(f"{name!r} threads {base.thread_names[name]} -> {now.thread_names[name]}")
    pooled = now.threads - sum(now.thread_names[n] for n in PER_WORKER_THREADS)
    pooled_base = base.threads - sum(base.thread_names[n] for n in PER_WORKER_THREADS)
    if pooled > pooled_base + POOL_SLACK:
        problems.append(
            f"pool threads {pooled_base} -> {pooled} (more than +{POOL_SLACK}): "
            f"more {dict(now.thread_names - base.thread_names)}"
        )
    return problems
