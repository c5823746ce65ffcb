"""A process that stops its connection exits 0, whatever state it was stopped in (20 of 20)."""

from __future__ import annotations

import itertools
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.temporal

ROOT = Path(__file__).resolve().parents[2]
STATES = ["DISCONNECTED", "CONNECTING", "CONNECTED", "UNHEALTHY", "RECONNECTING"]


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no output within {timeout}s"
    return proc.stdout.readline().strip()


def run_once(target: str, proxy: TcpProxy, data_dir: Path) -> tuple[int, float, str]:
    if target == "DISCONNECTED":
        proxy.refuse()
    elif target == "CONNECTING":
        proxy.blackhole()
    else:
        proxy.forward()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.stop_and_exit", proxy.address, target, str(data_dir)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if target in ("UNHEALTHY", "RECONNECTING"):
            assert read_line(proc, 20) == "connected"
            proxy.refuse() if target == "UNHEALTHY" else proxy.blackhole()
        assert read_line(proc, 30) == f"reached {target}"
        started = time.monotonic()
        _, err = proc.communicate(timeout=20)
        return proc.returncode, time.monotonic() - started, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_twenty_stops_twenty_clean_exits(temporal, tmp_path):
    results = []
    for n, target in zip(range(20), itertools.cycle(STATES), strict=False):
        with TcpProxy(target=temporal.address) as proxy:
            code, took, err = run_once(target, proxy, tmp_path / f"run{n}")
        results.append((target, code, round(took, 2)))
        assert code == 0, f"run {n} stopped in {target} exited {code}:\n{err[-3000:]}"
        assert took < 10, f"run {n} stopped in {target} took {took:.1f}s to exit"
        assert "Traceback" not in err, err[-3000:]
    print("stop-and-exit runs:", results)
