"""`--agent-runner` / STIGMER_AGENT_RUNNER: every accepted form, and every refusal as one line that
names the setting (stigmer.temporal.runners). The runners are tests/support/custom_runner.py's."""

from __future__ import annotations

import asyncio
import re
import sys
import tomllib
from pathlib import Path

import pytest
from loguru import logger

from stigmer.app import StigmerServer
from stigmer.config import DEFAULT_AGENT_RUNNER, Config
from stigmer.errors import ConfigError, ExitCode
from stigmer.temporal.agents import AgentFailure, EchoAgentRunner
from stigmer.temporal.runners import BUILTIN, GROUP, SETTING, ChosenRunner, known_names, load_agent_runner
from stigmer.testing.ports import free_port
from tests.support import custom_runner
from tests.support.custom_runner import Runner

ROOT = Path(__file__).resolve().parents[2]
M = "tests.support.custom_runner"


def refusal(setting: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_agent_runner(setting)
    message = str(caught.value)
    assert message.startswith(SETTING), message
    assert "\n" not in message, message
    return message


async def answer(chosen: ChosenRunner, message: str = "hi") -> list[str]:
    return await chosen.runner.run(agent="a1", message=message, runtime_env={}, heartbeat=lambda: None)


# -- what is accepted -------------------------------------------------------------------------------


def test_the_default_is_the_echo_runner() -> None:
    assert Config().agent_runner == DEFAULT_AGENT_RUNNER == "echo"
    chosen = load_agent_runner(DEFAULT_AGENT_RUNNER)
    assert isinstance(chosen.runner, EchoAgentRunner)
    assert chosen.describe() == "echo (stigmer.temporal.agents:EchoAgentRunner)"


async def test_a_class_is_instantiated_with_no_arguments() -> None:
    chosen = load_agent_runner(f"{M}:Runner")
    assert type(chosen.runner) is Runner and chosen.runner is not custom_runner.INSTANCE
    assert chosen.describe() == f"{M}:Runner"
    assert await answer(chosen) == [custom_runner.reply_for("a1", "hi")]


async def test_a_factory_is_called() -> None:
    first, second = load_agent_runner(f"{M}:make_runner"), load_agent_runner(f"{M}:make_runner")
    assert type(first.runner) is Runner and first.runner is not second.runner
    assert await answer(first, "x") == [custom_runner.reply_for("a1", "x")]


def test_an_instance_is_used_as_it_is() -> None:
    assert load_agent_runner(f"{M}:INSTANCE").runner is custom_runner.INSTANCE


def test_dotted_attributes_and_surrounding_blanks() -> None:
    assert load_agent_runner(f"  {M}:Holder.instance ").runner is custom_runner.INSTANCE
    assert type(load_agent_runner(f"{M}:Holder.make").runner) is Runner


def test_the_setting_comes_from_the_environment_and_the_flag_wins() -> None:
    env = {"STIGMER_AGENT_RUNNER": f" {M}:Runner "}
    assert Config.from_env(env).agent_runner == f"{M}:Runner"
    assert Config.from_env(env, agent_runner="echo").agent_runner == "echo"
    assert Config.from_env({"STIGMER_AGENT_RUNNER": "  "}).agent_runner == "echo"


# -- entry points -----------------------------------------------------------------------------------


def install_fake_distribution(site: Path, name: str, entries: dict[str, str]) -> None:
    """A distribution importlib.metadata finds on sys.path, as pip would leave it (METADATA + entry points)."""
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "".join(f"{key} = {value}\n" for key, value in entries.items())
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n{lines}")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_pyproject_registers_the_builtin_runners_under_the_group() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"][GROUP] == BUILTIN


async def test_a_name_from_an_installed_entry_point(site: Path) -> None:
    install_fake_distribution(site, "fake-runners", {"custom": f"{M}:Runner", "made": f"{M}:make_runner"})
    assert {"custom", "made", "echo"} <= set(known_names())
    chosen = load_agent_runner("custom")
    assert type(chosen.runner) is Runner
    assert chosen.describe() == f"custom ({M}:Runner)"
    assert await answer(chosen) == [custom_runner.reply_for("a1", "hi")]
    assert type(load_agent_runner("made").runner) is Runner


def test_an_unknown_name_lists_the_known_ones(site: Path) -> None:
    install_fake_distribution(site, "fake-runners", {"custom": f"{M}:Runner"})
    message = refusal("nosuch")
    assert f"{SETTING} 'nosuch': no runner of that name in the entry point group {GROUP}" in message
    assert "(known: custom, echo)" in message and "module:attr" in message


def test_a_name_registered_twice_with_different_targets_is_ambiguous(site: Path) -> None:
    install_fake_distribution(site, "fake-one", {"twice": f"{M}:Runner"})
    install_fake_distribution(site, "fake-two", {"twice": f"{M}:make_runner"})
    message = refusal("twice")
    assert "registered more than once" in message and "fake-one" in message and "fake-two" in message


def test_an_entry_point_whose_target_is_broken_says_both(site: Path) -> None:
    install_fake_distribution(site, "fake-runners", {"broken": "nosuch_runner_module:Runner", "bare": M})
    message = refusal("broken")
    assert "'broken' (entry point 'nosuch_runner_module:Runner'): no module named 'nosuch_runner_module'" in message
    assert "must look like module:attr" in refusal("bare")


# -- what is refused, one line each -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("", "is empty: give a runner's name (echo"),
        ("   ", "is empty"),
        ("mod:", "'mod:': must look like module:attr (e.g. mypackage.runners:MyRunner) or be a runner's name"),
        (":Runner", "must look like module:attr"),
        ("my-mod:Runner", "must look like module:attr"),
        ("mod:Run ner", "must look like module:attr"),
        ("nosuch_runner_module:Runner", "no module named 'nosuch_runner_module' (is its directory on PYTHONPATH?)"),
        ("tests.support.nosuch:Runner", "no module named 'tests.support.nosuch'"),
        (f"{M}:Nope", f"module '{M}' has no attribute 'Nope' (runner classes there: "),
        (f"{M}:Holder.nope", f"'{M}:Holder' has no attribute 'nope'"),
        (f"{M}:NOT_A_RUNNER", "NOT_A_RUNNER is 42 (int): not a runner (no run() method), nor a class or factory"),
        (f"{M}:NoRun", "NoRun() gave <"),
        (f"{M}:factory_of_nothing", "factory_of_nothing() gave <object object at"),
        ("os:getcwd", "getcwd() gave '"),
        ("tests.support:custom_runner", "custom_runner is <module"),
        (f"{M}:SyncRun", "SyncRun(): run() must be a coroutine method (async def run(...)), it is not"),
        (f"{M}:WrongKeywords", "cannot be called as run(agent=..., message=..., runtime_env=..., heartbeat=...)"),
        (f"{M}:async_factory", "async_factory is an async function: give a class, a plain zero-argument factory"),
        (
            f"{M}:NeedsArguments",
            "NeedsArguments() failed: TypeError: NeedsArguments.__init__() missing 1 required positional argument: "
            "'url' (a runner class is instantiated with no arguments)",
        ),
        (f"{M}:RefusesToStart", "RefusesToStart() refused: STIGMER_CUSTOM_URL is not set"),
        (f"{M}:BreaksAtStart", "BreaksAtStart() failed: RuntimeError: boom (/"),
    ],
)
def test_refusals_name_the_setting_and_the_problem(setting: str, says: str) -> None:
    message = refusal(setting)
    assert says in message, message
    if setting.strip():
        assert f"{SETTING} {setting.strip()!r}" in message, message


@pytest.mark.parametrize(
    ("module", "source", "says"),
    [
        (
            "raises_at_import",
            "raise ZeroDivisionError('no')\n",
            "importing 'raises_at_import' failed: ZeroDivisionError: no (",
        ),
        ("bad_syntax", "def broken(:\n", "importing 'bad_syntax' failed: SyntaxError: "),
        (
            "lacks_a_dependency",
            "import nosuch_dependency_xyz\n",
            "failed: ModuleNotFoundError: No module named 'nosuch_dependency_xyz' (",
        ),
    ],
)
def test_a_module_that_fails_to_import_is_one_line_with_its_place(
    site: Path, module: str, source: str, says: str
) -> None:
    (site / f"{module}.py").write_text(source)
    message = refusal(f"{module}:Runner")
    assert says in message, message
    if "SyntaxError" not in says:
        assert f"{site / module}.py:1)" in message, message  # where the user's code raised
    assert module not in sys.modules


# -- the server: refused before anything starts ----------------------------------------------------


async def test_the_server_exits_78_before_it_opens_the_store(tmp_path: Path) -> None:
    lines: list[tuple[str, str]] = []
    sink = logger.add(lambda m: lines.append((m.record["level"].name, m.record["message"])), level="INFO")
    try:
        config = Config(data_dir=tmp_path / "data", agent_runner="nosuch_runner_module:Runner")
        code = await StigmerServer(config).run(asyncio.Event())
    finally:
        logger.remove(sink)
    assert code == ExitCode.CONFIG
    errors = [message for level, message in lines if level == "ERROR"]
    assert errors == [f"{SETTING} 'nosuch_runner_module:Runner': no module named 'nosuch_runner_module' "
                      "(is its directory on PYTHONPATH?)"]  # fmt: skip
    assert not (tmp_path / "data" / "stigmer.db").exists(), "the store was opened"


async def test_a_runner_given_to_the_server_wins_over_the_setting(tmp_path: Path) -> None:
    """Embedding code (tests) passes its runner; the setting is then not even loaded."""
    config = Config(
        data_dir=tmp_path / "data",
        address=f"127.0.0.1:{free_port()}",
        temporal_host_port=f"127.0.0.1:{free_port()}",  # nobody there: the server serves anyway
        agent_runner="nosuch_runner_module:Runner",
        grace=0.1,
    )
    async with StigmerServer(config, runner=custom_runner.INSTANCE) as server:
        assert server.running is not None
    assert server.exit_code == ExitCode.OK


# -- the README's example stays true ----------------------------------------------------------------


def readme_section() -> str:
    text = (ROOT / "README.md").read_text()
    return text.split("## Your own agent runner", 1)[1].split("\n## ", 1)[0]


async def test_the_readme_runner_loads_and_answers_as_it_says(site: Path) -> None:
    section = readme_section()
    block = re.search(r"```python\n# my_runners.py\n(.*?)```", section, re.S)
    assert block, "the section's example runner"
    (site / "my_runners.py").write_text(block.group(1))
    chosen = load_agent_runner("my_runners:ShoutingRunner")
    beats: list[None] = []
    replies = await chosen.runner.run(
        agent="loud", message="hello", runtime_env={}, heartbeat=lambda: beats.append(None)
    )
    assert replies == ["HELLO"] and len(beats) == 3
    with pytest.raises(AgentFailure, match="nothing to shout"):
        await chosen.runner.run(agent="loud", message=" ", runtime_env={}, heartbeat=lambda: None)
    quoted = re.search(r"exit 78: `(.*?)`", " ".join(section.split()))
    assert quoted and refusal("my_runners:Shouter") == quoted.group(1)
