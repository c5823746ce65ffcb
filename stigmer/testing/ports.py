"""Free TCP ports on 127.0.0.1 for test servers.

Ports are drawn at random from *below* the kernel's ephemeral range and checked by binding.
The obvious trick, bind port 0 and release, hands out an ephemeral port, and the kernel hands
the same ports to every outgoing connection and to every server that binds port 0 itself. A dev
server pinned to such a port could lose it in the gap between our check and its own bind: this
was measured (2 dev servers started together under CPU load: 1 start in 40 died with "bind:
address already in use" on its pinned HTTP port, taken by the other's internal services, which
the CLI binds to port 0). Below the ephemeral range only explicit binds land, so the gap is
harmless unless another process draws the same random number in the same instant.

The allocator also remembers what it gave out and never repeats itself within a process, so two
servers in one test session never get the same port before either has bound it.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

_MAX_TRIES = 500
_LOWEST = 10_000  # stay clear of well-known and registered-service ports
_MIN_SPAN = 2_000  # below this many candidates, fall back to the kernel's choice


def is_port_free(port: int, *, host: str = "127.0.0.1") -> bool:
    """True when a server could listen on `port` now.

    Binds with SO_REUSEADDR, as Go and asyncio servers do, so sockets of closed connections
    lingering in TIME_WAIT do not count as "in use": only a live listener or bound socket does.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _ephemeral_low(default: int = 32_768) -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return default  # Linux's default; other systems: the fallback below still works


class PortAllocator:
    """Hands out distinct free ports; thread-safe."""

    def __init__(self, *, host: str = "127.0.0.1") -> None:
        self._host = host
        self._lock = threading.Lock()
        self._handed_out: set[int] = set()
        self._random = random.SystemRandom()  # independent of any seeding a test does
        self._high = _ephemeral_low()

    def free_port(self) -> int:
        with self._lock:
            for _ in range(_MAX_TRIES):
                port = self._candidate()
                if port not in self._handed_out and is_port_free(port, host=self._host):
                    self._handed_out.add(port)
                    return port
        raise RuntimeError(f"no fresh free port on {self._host} after {_MAX_TRIES} tries")

    def _candidate(self) -> int:
        if self._high - _LOWEST >= _MIN_SPAN:
            return self._random.randrange(_LOWEST, self._high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((self._host, 0))
            port: int = sock.getsockname()[1]
        return port


# One allocator per process: its only state is the set of numbers already handed out.
_ALLOCATOR = PortAllocator()


def free_port() -> int:
    """A free TCP port on 127.0.0.1, never the same one twice within this process."""
    return _ALLOCATOR.free_port()
