import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from statemachine import TRANSITIONS, State
from statemachine.diagram import DiagramError, render_dot, render_mermaid, render_svg
from stigmer.cli import cli

COMMITTED = Path(__file__).resolve().parents[2] / "diagrams" / "connection-lifecycle.mmd"


def test_committed_mermaid_diagram_is_fresh():
    assert COMMITTED.read_text() == render_mermaid(), (
        f"{COMMITTED} is stale: run `stigmer diagram -o diagrams/connection-lifecycle.mmd` and commit it"
    )


def test_mermaid_has_every_state_and_every_edge():
    text = render_mermaid()
    assert text.splitlines()[3] == "stateDiagram-v2"
    for state in State:
        assert f'state "{state.name}" as {state.name}' in text
    for edge in TRANSITIONS:
        for source in edge.sources:
            assert f"{source.name} --> {edge.dest.name}: {edge.trigger}" in text
    assert "s_active" not in text.split("classDef s_active")[1]  # static: nothing highlighted
    assert "STOPPED --> [*]" in text


def test_live_diagram_highlights_the_current_state():
    text = render_mermaid(current=State.RECONNECTING)
    assert "class RECONNECTING s_active" in text
    assert text.count(" s_active") == 2  # the classDef and the one state


def test_dot_source_has_every_edge():
    dot = render_dot()
    assert dot.startswith('digraph "Temporal connection lifecycle"')
    assert sum(len(edge.sources) for edge in TRANSITIONS) == dot.count(" -> ")


def test_svg_without_graphviz_names_what_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(DiagramError, match="apt-get install graphviz"):
        render_svg()


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` not installed")
def test_svg_with_graphviz():
    assert b"<svg" in render_svg()


def test_cli_prints_mermaid_by_default():
    result = CliRunner().invoke(cli, ["diagram"])
    assert result.exit_code == 0, result.output
    assert result.output == render_mermaid()


def test_cli_writes_a_file(tmp_path):
    out = tmp_path / "sub" / "g.dot"
    result = CliRunner().invoke(cli, ["diagram", "--format", "dot", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == render_dot()


def test_cli_svg_error_is_clear_and_not_a_traceback(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", "/nonexistent")
    result = CliRunner().invoke(cli, ["diagram", "--format", "svg", "-o", str(tmp_path / "g.svg")])
    assert result.exit_code == 1
    assert "apt-get install graphviz" in result.output
    assert "Traceback" not in result.output


def test_cli_rejects_unknown_format():
    result = CliRunner().invoke(cli, ["diagram", "--format", "png"])
    assert result.exit_code == 2
    assert "'png' is not one of" in result.output


def test_live_without_a_server_names_the_address():
    result = CliRunner().invoke(cli, ["diagram", "--live", "--address", "127.0.0.1:1"])
    assert result.exit_code == 69
    assert "cannot reach the stigmer server at 127.0.0.1:1" in result.output
