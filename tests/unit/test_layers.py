"""The layers of docs/architecture.md, checked on the source: no import circle, arrows pointing down.

Module-level imports only (what runs at import time), ``if TYPE_CHECKING:`` blocks excluded; an
import inside a function is a deliberate late import and cannot form a circle at import time.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("statemachine", "stigmer")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def _top_level_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif (isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test)) or isinstance(
            node, ast.With | ast.Try
        ):
            yield from (n for n in ast.walk(node) if isinstance(n, ast.Import | ast.ImportFrom))


def _runs_at_import(node: ast.stmt) -> bool:
    """A block whose imports run at import time: ``with`` (the sandbox's passthrough), ``try``,
    an ``if`` other than ``if TYPE_CHECKING:``."""
    if isinstance(node, ast.If):
        return "TYPE_CHECKING" not in ast.unparse(node.test)
    return isinstance(node, ast.With | ast.Try)


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    modules = _modules()
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    base = node.module or ""
    if node.level:
        package = module if modules[module].name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{base}" if base else package
    yield base
    for alias in node.names:  # `from pkg import submodule`
        if f"{base}.{alias.name}" in modules:
            yield f"{base}.{alias.name}"


@cache
def graph() -> dict[str, frozenset[str]]:
    """Module -> the project modules it imports at import time (their packages' faces included,
    except the importer's own packages: a face importing its submodules is how packages work)."""
    modules = _modules()
    edges: dict[str, frozenset[str]] = {}
    for module, path in modules.items():
        found: set[str] = set()
        for node in _top_level_imports(ast.parse(path.read_text())):
            for target in _targets(module, node):
                parts = target.split(".")
                for end in range(1, len(parts) + 1):
                    name = ".".join(parts[:end])
                    own_package = module == name or module.startswith(name + ".")
                    if name in modules and not own_package:
                        found.add(name)
        edges[module] = frozenset(found)
    return edges


def imports_of(prefix: str) -> dict[str, set[str]]:
    """Every module under ``prefix`` -> what it imports from outside ``prefix``."""
    return {
        module: {t for t in targets if not t.startswith(prefix)}
        for module, targets in graph().items()
        if module == prefix or module.startswith(prefix + ".")
    }


def _third_party(module: str) -> set[str]:
    path = _modules()[module]
    roots = set()
    for node in _top_level_imports(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


def test_there_is_no_import_circle() -> None:
    edges, state, circles = graph(), {}, []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(edges[module]):
            if state.get(target) == "open":
                circles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not circles, "\n".join(circles)


def test_the_state_machine_imports_nothing_of_the_service_temporal_or_grpc() -> None:
    for module in imports_of("statemachine"):
        assert not imports_of("statemachine")[module], module
        assert not _third_party(module) & {"stigmer", "temporalio", "grpc"}, module


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        (
            "stigmer.controllers",
            ("stigmer.temporal", "stigmer.server", "stigmer.cli", "stigmer.app", "stigmer.metrics"),
        ),
        (
            "stigmer.store",
            ("stigmer.temporal", "stigmer.controllers", "stigmer.server", "stigmer.cli", "stigmer.metrics"),
        ),
        ("stigmer.workflows", ("stigmer.temporal", "stigmer.controllers", "stigmer.store", "stigmer.server")),
        ("stigmer.temporal", ("stigmer.server", "stigmer.cli", "stigmer.app", "stigmer.metrics")),
        ("stigmer.server", ("stigmer.cli", "stigmer.app", "stigmer.metrics")),
        # Metrics are fed by the wiring (stigmer.app) through callbacks and protocols: they know the
        # lifecycle's types (statemachine) and nothing else of the service; nothing below imports them.
        (
            "stigmer.metrics",
            (
                "stigmer.temporal",
                "stigmer.controllers",
                "stigmer.store",
                "stigmer.server",
                "stigmer.cli",
                "stigmer.app",
            ),
        ),
        ("stigmer.errors", ("stigmer",)),
        ("stigmer.phases", ("stigmer",)),
        # The client talks to the server over gRPC only: nothing of the server side.
        (
            "stigmer.client",
            ("stigmer.store", "stigmer.temporal", "stigmer.controllers", "stigmer.server", "stigmer.app"),
        ),
        # The pytest plugin loads in every pytest run: it drives the server as a process, and imports
        # the client only inside its client fixtures.
        (
            "stigmer.testing",
            (
                "stigmer.store",
                "stigmer.temporal",
                "stigmer.controllers",
                "stigmer.server",
                "stigmer.app",
                "stigmer.cli",
                "stigmer.client",
            ),
        ),
        # Client commands start fast: the server stack is imported late, by `server start` only.
        (
            "stigmer.cli",
            (
                "stigmer.controllers",
                "stigmer.store",
                "stigmer.temporal",
                "stigmer.server",
                "stigmer.app",
                "stigmer.metrics",
            ),
        ),
    ],
)
def test_arrows_point_down(layer: str, forbidden: tuple[str, ...]) -> None:
    wrong = {
        f"{module} imports {target}"
        for module, targets in imports_of(layer).items()
        for target in targets
        if any(target == f or target.startswith(f + ".") for f in forbidden)
    }
    assert not wrong, sorted(wrong)


def test_controllers_reach_temporal_only_through_their_ports() -> None:
    for module in imports_of("stigmer.controllers"):
        assert not _third_party(module) & {"temporalio", "grpc"}, module
