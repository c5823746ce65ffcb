"""Resident memory and CPU time of a process, read from /proc (Linux only, no psutil needed)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ProcSample:
    at: float  # time.monotonic() of the sample
    rss_bytes: int
    cpu_seconds: float  # user + system, since the process started


def sample(pid: int, *, at: float) -> ProcSample:
    """One reading; raises ProcessLookupError if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        statm = Path(f"/proc/{pid}/statm").read_text()
    except FileNotFoundError:
        raise ProcessLookupError(pid) from None
    # The command name (field 2) may contain spaces: split after its closing parenthesis.
    fields = stat.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    resident_pages = int(statm.split()[1])
    return ProcSample(at=at, rss_bytes=resident_pages * PAGE_SIZE, cpu_seconds=(utime + stime) / CLOCK_TICKS)


@dataclass(frozen=True)
class Usage:
    """A process over a window: CPU in % of one core, RSS in MiB (mean and peak of the samples)."""

    seconds: float
    cpu_percent: float
    rss_mean_mib: float
    rss_max_mib: float


def usage(samples: list[ProcSample]) -> Usage:
    if len(samples) < 2:
        raise ValueError("need at least two samples for a usage figure")
    first, last = samples[0], samples[-1]
    elapsed = last.at - first.at
    rss = [s.rss_bytes / 2**20 for s in samples]
    return Usage(
        seconds=elapsed,
        cpu_percent=100.0 * (last.cpu_seconds - first.cpu_seconds) / elapsed,
        rss_mean_mib=sum(rss) / len(rss),
        rss_max_mib=max(rss),
    )
