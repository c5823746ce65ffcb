"""The workers' sandbox (when on) shares our pure helper modules instead of re-executing them for every new
workflow instance (what made each create wait ~13 ms on a busy server; bench/ measures it)."""

from __future__ import annotations

import importlib.machinery
import sys
from collections.abc import Callable
from typing import Any

import pytest
from temporalio import workflow
from temporalio.worker import WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from stigmer.temporal.workers import PASSTHROUGH_MODULES, workflow_runner
from stigmer.temporal.workflows import AgentExecutionWorkflow, WorkflowExecutionWorkflow

#: What the default sandbox re-executes per instance: the helper imported by name from the
#: workflow module's own (re-executed) package. The domain modules (stigmer.workflows) are
#: imported from a package the sandbox leaves alone; PASSTHROUGH_MODULES lists them anyway.
HELPERS = {"stigmer.temporal.names"}


def executed_modules(runner: WorkflowRunner, cls: type, monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Names of the stigmer modules whose code runs while the sandbox creates one instance.

    Watched on every loader that may execute them: the source loader, and the loaders on
    sys.meta_path, among them pytest's assertion rewriter, which loads the whole stigmer package
    when a distribution on sys.path (an in-tree stigmer_py.egg-info) lists the pytest11 plugin."""
    seen: set[str] = set()
    loaders = {
        importlib.machinery.SourceFileLoader,
        *(type(f) for f in sys.meta_path if hasattr(type(f), "exec_module")),
    }

    def watching(original: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
        def exec_module(self: Any, module: Any) -> None:
            if module.__name__.startswith("stigmer."):
                seen.add(module.__name__)
            original(self, module)

        return exec_module

    with monkeypatch.context() as patch:
        for loader in loaders:
            patch.setattr(loader, "exec_module", watching(loader.exec_module))
        runner.prepare_workflow(workflow._Definition.must_from_class(cls))
    return seen


@pytest.mark.parametrize("cls", [AgentExecutionWorkflow, WorkflowExecutionWorkflow])
async def test_the_default_sandbox_would_re_execute_the_helpers(cls, monkeypatch):
    # The control: shows the probe sees re-execution, so the next test can fail.
    assert executed_modules(SandboxedWorkflowRunner(), cls, monkeypatch) >= HELPERS


@pytest.mark.parametrize("cls", [AgentExecutionWorkflow, WorkflowExecutionWorkflow])
async def test_the_workers_sandbox_passes_the_helpers_through(cls, monkeypatch):
    executed = executed_modules(workflow_runner(sandbox=True), cls, monkeypatch)
    # The workflow module itself stays sandboxed (and its package, a docstring).
    assert "stigmer.temporal.workflows" in executed
    assert executed <= {"stigmer.temporal", "stigmer.temporal.workflows"}, executed
    assert set(PASSTHROUGH_MODULES) >= HELPERS


@pytest.mark.parametrize("cls", [AgentExecutionWorkflow, WorkflowExecutionWorkflow])
async def test_without_the_sandbox_nothing_is_re_executed(cls, monkeypatch):
    assert executed_modules(workflow_runner(sandbox=False), cls, monkeypatch) == set()


def test_the_server_runs_workflows_unsandboxed_unless_asked():
    from stigmer.config import Config

    assert Config.from_env({}).connection_settings().workflow_sandbox is False
    assert Config.from_env({}, workflow_sandbox=True).connection_settings().workflow_sandbox is True
