"""The pytest plugin as a user meets it: a tiny test suite in a directory of its own (no conftest.py,
no pytest_plugins), run by a fresh ``python -m pytest`` that finds the plugin through its entry point."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from stigmer.testing.factories import StigmerServerFactory
from stigmer.testing.ports import free_port
from stigmer.testing.server import StigmerServerExitedError

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.temporal

README = Path(__file__).resolve().parents[2] / "README.md"
RUN_TIMEOUT = 240.0  # one inner run: a dev server and a stigmer server per test, a few seconds each


def run(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(test_user=textwrap.dedent(source))
    assert not list(pytester.path.glob("conftest.py"))
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=RUN_TIMEOUT)


def test_the_plugin_loads_from_its_entry_point(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        def test_loaded(pytestconfig):
            plugin = pytestconfig.pluginmanager.get_plugin("stigmer")
            assert plugin is not None and plugin.__name__ == "stigmer.testing.plugin"
        """,
    )
    result.assert_outcomes(passed=1)


def test_the_plugin_imports_neither_grpc_nor_temporalio() -> None:
    """It loads in every pytest run of every project that installs stigmer-py: it must stay light."""
    code = "import sys, stigmer.testing.plugin; print(sorted({'grpc', 'temporalio'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr


def test_the_guides_pattern_server_first_then_temporal(pytester: pytest.Pytester) -> None:
    """The guide's "For E2E Tests" pattern, with the fixtures, the factories and the async client."""
    result = run(
        pytester,
        """
        import pytest

        @pytest.mark.stigmer_temporal(start=False)
        def test_with_the_fixtures(temporal_dev_server, stigmer_server, stigmer_client):
            assert not temporal_dev_server.is_running
            assert not stigmer_client.is_temporal_connected()  # the server is up, Temporal is not

            temporal_dev_server.start()
            stigmer_client.wait_temporal_connected(timeout=30)

            execution = stigmer_client.create_agent_execution(agent="echo", message="hi")
            done = stigmer_client.wait_for_phase(execution.id, ["COMPLETED"], timeout=60)
            assert done.phase == "COMPLETED"

        def test_with_the_factories(temporal_dev_server_factory, stigmer_server_factory):
            from stigmer.client import Client

            temporal = temporal_dev_server_factory(start=False)
            server = stigmer_server_factory(temporal=temporal)
            temporal.start()
            with Client(address=server.address, timeout=10) as client:
                client.wait_temporal_connected(timeout=30)
                execution = client.create_agent_execution(agent="echo", message="hi")
                assert client.wait_for_phase(execution.id, ["COMPLETED"], timeout=60).phase == "COMPLETED"

        @pytest.mark.asyncio
        @pytest.mark.stigmer_temporal(start=False)
        async def test_with_the_async_client(temporal_dev_server, async_stigmer_client):
            temporal_dev_server.start()
            await async_stigmer_client.wait_temporal_connected(timeout=30)
            execution = await async_stigmer_client.create_agent_execution(agent="echo", message="hi")
            done = await async_stigmer_client.wait_for_phase(execution.id, ["COMPLETED"], timeout=60)
            assert done.phase == "COMPLETED"
        """,
    )
    result.assert_outcomes(passed=3)


def test_the_readme_example_passes(pytester: pytest.Pytester) -> None:
    section = README.read_text().split("## Testing your code against stigmer", 1)[1].split("\n## ", 1)[0]
    examples = [b for b in re.findall(r"```python\n(.*?)```", section, re.S) if b.startswith("import pytest")]
    assert len(examples) == 1, "the section's runnable example starts with `import pytest`"
    run(pytester, examples[0]).assert_outcomes(passed=2)


def test_a_failed_test_reports_the_server_and_temporal_logs(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
        def test_fails(stigmer_client):
            stigmer_client.wait_temporal_connected(timeout=30)
            assert False, "the user's assertion"
        """,
    )
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "the user's assertion" in out
    result.stdout.fnmatch_lines(
        ["*- stigmer server log (127.0.0.1:*) -*", "*- temporal dev server log (127.0.0.1:*) -*"]
    )
    server_log = out.split("stigmer server log (", 1)[1].split("temporal dev server log (", 1)[0]
    assert "Stigmer Server started successfully" in server_log
    assert "Initial Temporal connection successful" in server_log  # the log as of the failure


def test_a_server_that_exits_at_start_fails_at_once_with_its_log(stigmer_server_factory: StigmerServerFactory) -> None:
    began = time.monotonic()
    with pytest.raises(StigmerServerExitedError, match="exited with code 2 before it started") as caught:
        stigmer_server_factory(temporal=f"127.0.0.1:{free_port()}", extra=["--exit-after-outage", "soon"])
    assert "expected a duration like 90s, 5m or 1h" in str(caught.value)  # the log's tail, in the error
    assert time.monotonic() - began < 10  # not the 20 s start deadline


def test_a_passing_test_reports_no_logs(pytester: pytest.Pytester) -> None:
    result = run(pytester, "def test_passes(stigmer_server):\n    assert stigmer_server.log()\n", "-rA")
    result.assert_outcomes(passed=1)
    assert "stigmer server log (" not in result.stdout.str()


SHARED = """
    seen = []

    def test_one(stigmer_server):
        seen.append(stigmer_server.address)

    def test_two(stigmer_server):
        seen.append(stigmer_server.address)
        assert len(set(seen)) == 1, seen
    """


def test_each_test_has_its_own_server_by_default(pytester: pytest.Pytester) -> None:
    run(pytester, SHARED).assert_outcomes(passed=1, failed=1)


def test_the_scope_option_shares_the_servers(pytester: pytest.Pytester) -> None:
    run(pytester, SHARED, "--stigmer-scope=module").assert_outcomes(passed=2)


def test_the_scope_ini_option_shares_the_servers_and_the_command_line_wins(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nstigmer_scope = session\n")
    run(pytester, SHARED).assert_outcomes(passed=2)
    run(pytester, SHARED, "--stigmer-scope=function").assert_outcomes(passed=1, failed=1)


def test_a_wrong_scope_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nstigmer_scope = forever\n")
    result = run(pytester, "def test_nothing():\n    pass\n")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*stigmer_scope must be one of function, module, session, got 'forever'*"])


def test_under_xdist_every_worker_has_its_own_processes(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    result = run(
        pytester,
        """
        import json, os, pathlib

        import pytest

        @pytest.mark.parametrize("n", range(4))
        def test_reachable(n, temporal_dev_server, stigmer_server, stigmer_client):
            stigmer_client.wait_temporal_connected(timeout=30)
            line = {"worker": os.environ["PYTEST_XDIST_WORKER"], "server": stigmer_server.address,
                    "temporal": temporal_dev_server.address, "data": str(stigmer_server.data_dir)}
            with open(pathlib.Path(__file__).with_name("seen.jsonl"), "a") as out:
                out.write(json.dumps(line) + "\\n")
        """,
        "-n",
        "2",
        "--stigmer-scope=session",
    )
    result.assert_outcomes(passed=4)
    seen = [json.loads(line) for line in (pytester.path / "seen.jsonl").read_text().splitlines()]
    by_worker: dict[str, set[tuple[str, str, str]]] = {}
    for line in seen:
        by_worker.setdefault(line["worker"], set()).add((line["server"], line["temporal"], line["data"]))
    assert all(len(processes) == 1 for processes in by_worker.values()), by_worker  # session scope, per worker
    every = [next(iter(processes)) for processes in by_worker.values()]
    for i in range(3):  # no server, dev server or data dir is shared between workers
        assert len({processes[i] for processes in every}) == len(every), by_worker
