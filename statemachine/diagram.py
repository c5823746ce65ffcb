"""The lifecycle graph as Mermaid (no system packages), Graphviz DOT, or SVG (needs Graphviz)."""

from __future__ import annotations

from typing import Final, Literal

from transitions.extensions.diagrams import GraphMachine

from statemachine.states import State
from statemachine.table import machine_transitions

Format = Literal["mermaid", "dot", "svg"]
FORMATS: Final[tuple[Format, ...]] = ("mermaid", "dot", "svg")
TITLE: Final = "Temporal connection lifecycle"
#: What entering and leaving CONNECTED does, per process role (one machine, role-specific effects).
ROLE_EFFECTS: Final = (
    "entry: start workers (roles all, worker; --queues)",
    "+ inject creators (roles all, api)",
    "exit: withdraw creators, stop workers",
)


class DiagramError(RuntimeError):
    """A diagram could not be produced; the message says what to install or do instead."""


class _Model:
    """A bare model: the graph machine binds triggers and ``state`` to it."""


def _graph(engine: Literal["mermaid", "graphviz"], current: State | None) -> object:
    model = _Model()
    machine = GraphMachine(
        model=model,
        states=State,
        transitions=machine_transitions(),
        initial=current or State.DISCONNECTED,
        auto_transitions=False,
        graph_engine=engine,
        title=TITLE,
        show_conditions=False,
    )
    graph = machine.get_graph()
    if current is None:
        # A static diagram describes the machine, not a running instance: highlight nothing.
        machine.model_graphs[id(model)].set_node_style(State.DISCONNECTED, "default")
        graph = machine.get_graph()
    return graph


def render_mermaid(*, current: State | None = None) -> str:
    """Mermaid ``stateDiagram-v2`` text; ``current`` is highlighted when given."""
    text: str = _graph("mermaid", current).draw(None)  # type: ignore[attr-defined]
    # Mermaid documents the styling statement in lower case.
    text = text.replace("\n  Class ", "\n  class ")
    # Show that STOPPED is terminal, the way state diagrams usually do, and what CONNECTED does.
    note = "".join(f"    {line}\n" for line in ROLE_EFFECTS)
    return text.rstrip("\n") + f"\n  STOPPED --> [*]\n  note right of CONNECTED\n{note}  end note\n"


def render_dot(*, current: State | None = None) -> str:
    """Graphviz DOT source (needs the `graphviz` Python package, not the Graphviz programs)."""
    try:
        source: str = _graph("graphviz", current).source  # type: ignore[attr-defined]
    except ImportError as err:  # pragma: no cover - graphviz is a declared dependency
        raise DiagramError("DOT output needs the Python package `graphviz`: pip install graphviz") from err
    return source


def render_svg(*, current: State | None = None) -> bytes:
    """SVG rendered by Graphviz's ``dot`` program."""
    graph = _graph("graphviz", current)
    try:
        import graphviz  # type: ignore[import-untyped]
    except ImportError as err:  # pragma: no cover
        raise DiagramError("SVG output needs the Python package `graphviz`: pip install graphviz") from err
    try:
        svg: bytes = graph.pipe(format="svg")  # type: ignore[attr-defined]
    except graphviz.ExecutableNotFound as err:
        raise DiagramError(
            "SVG output needs Graphviz's `dot` program, which is not installed "
            "(Debian/Ubuntu: `apt-get install graphviz`, macOS: `brew install graphviz`). "
            "Mermaid (the default) and DOT need nothing extra."
        ) from err
    return svg


def render(fmt: Format = "mermaid", *, current: State | None = None) -> str | bytes:
    if fmt == "mermaid":
        return render_mermaid(current=current)
    if fmt == "dot":
        return render_dot(current=current)
    if fmt == "svg":
        return render_svg(current=current)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
