"""What the stigmer server process holds, read from /proc, and when that counts as a leak."""

from __future__ import annotations

import collections
import dataclasses
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
    #: TCP sockets by what they are: "STATE local-port -> remote-port" with the ephemeral side
    #: written as "*" (so two connections to the same Temporal count as one kind, twice).
    tcp: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)

    @classmethod
    def read(cls, pid: int) -> ProcStats:
        kinds: collections.Counter[str] = collections.Counter()
        inodes: list[str] = []
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:  # closed while we looked
                continue
            kinds[target.split(":[")[0] if ":[" in target else Path(target).name] += 1
            if target.startswith("socket:["):
                inodes.append(target[len("socket:[") : -1])
        status = Path(f"/proc/{pid}/status").read_text()
        threads = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))
        names: collections.Counter[str] = collections.Counter()
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                names[Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()] += 1
            except OSError:  # the thread ended while we looked
                continue
        return cls(
            fds=sum(kinds.values()), threads=threads, fd_kinds=kinds, thread_names=names, tcp=_tcp_sockets(pid, inodes)
        )

    def short(self) -> str:
        return f"{self.fds} fds, {self.threads} threads, {self.tasks} asyncio tasks"


#: /proc/net/tcp's state codes (include/net/tcp_states.h).
_TCP_STATES = {
    "01": "ESTABLISHED",
    "02": "SYN_SENT",
    "03": "SYN_RECV",
    "04": "FIN_WAIT1",
    "05": "FIN_WAIT2",
    "06": "TIME_WAIT",
    "07": "CLOSE",
    "08": "CLOSE_WAIT",
    "09": "LAST_ACK",
    "0A": "LISTEN",
    "0B": "CLOSING",
}


def _tcp_sockets(pid: int, inodes: list[str]) -> collections.Counter[str]:
    """What each of the process's TCP sockets is, by inode, from /proc/<pid>/net/tcp{,6}."""
    wanted, found = set(inodes), collections.Counter[str]()
    rows: list[tuple[int, int, str, str]] = []
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[9] in wanted:
                local, remote = (int(f.rsplit(":", 1)[1], 16) for f in fields[1:3])
                rows.append((local, remote, _TCP_STATES.get(fields[3], fields[3]), table))
    listening = {local for local, _, state, _ in rows if state == "LISTEN"}
    for local, remote, state, table in rows:
        # grpc core (the probes' channels) opens AF_INET6 sockets, v4-mapped; tokio (the SDK) AF_INET.
        if state == "LISTEN":
            found[f"LISTEN :{local}"] += 1
        elif local in listening:  # accepted: the peer's port is the ephemeral one
            found[f"{state} {table} :{local} <- *"] += 1
        else:
            found[f"{state} {table} * -> :{remote}"] += 1
    return found


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
        more_tcp = dict(now.tcp - base.tcp)
        problems.append(
            f"fds {base.fds} -> {now.fds}: more {dict(now.fd_kinds - base.fd_kinds)}"
            + (f", tcp {more_tcp} (all now: {dict(now.tcp)})" if more_tcp else "")
        )
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
