"""Run as a process: connect to ADDRESS, wait for STATE, stop the connection, exit.

``python -m tests.integration.stop_and_exit ADDRESS STATE DATA_DIR`` -- used to prove that the
process exits 0 whatever state it is stopped in (the SDK has been seen to crash the interpreter
at exit right after a worker shutdown while Temporal was unreachable).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from stigmer.process import exit_process
from stigmer.testing.eventually import eventually
from tests.integration.connection_rig import connection_rig, fast_settings


async def main(address: str, target: str, data_dir: Path) -> int:
    settings = fast_settings(address, dial_timeout=5.0)
    async with connection_rig(settings, data_dir) as rig:
        if target in ("UNHEALTHY", "RECONNECTING"):
            await eventually(rig.connection.is_connected, timeout=20, interval=0.01, what="CONNECTED")
            print("connected", flush=True)  # the test now breaks the path to Temporal
        await eventually(lambda: rig.state == target, timeout=20, interval=0.01, what=target)
        print(f"reached {target}", flush=True)
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":
    code = asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
    exit_process(code)
