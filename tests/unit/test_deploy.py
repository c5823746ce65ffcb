"""deploy/ cannot rot: every flag its manifests and Procfile pass exists on the command they run,
every variable they set is one stigmer reads, and the probes never ask for Temporal's state."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from stigmer.cli import cli
from stigmer.config import ENV, TEMPORAL_ADDRESS_ALIAS

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def command(args: list[str]) -> tuple[click.Command, list[str]]:
    """The click command ``stigmer <args>`` runs, and the rest of the arguments."""
    found: click.Command = cli
    rest = list(args)
    while isinstance(found, click.Group) and rest and rest[0] in found.commands:
        found = found.commands[rest.pop(0)]
    return found, rest


def flags(cmd: click.Command) -> set[str]:
    return {opt for param in cmd.params for opt in (*param.opts, *param.secondary_opts)}


def known_variables() -> set[str]:
    found = set(ENV) | {TEMPORAL_ADDRESS_ALIAS}

    def walk(cmd: click.Command) -> None:
        for param in cmd.params:
            envvar = getattr(param, "envvar", None)
            found.update([envvar] if isinstance(envvar, str) else list(envvar or ()))
        if isinstance(cmd, click.Group):
            for sub in cmd.commands.values():
                walk(sub)

    walk(cli)
    return found


def check_args(args: list[str]) -> None:
    cmd, rest = command(args)
    assert not isinstance(cmd, click.Group), f"{args}: not a command"
    known = flags(cmd)
    used = [arg.split("=", 1)[0] for arg in rest if arg.startswith("-")]
    assert not [flag for flag in used if flag not in known], f"{args}: unknown flags for {cmd.name}"
    ctx = cmd.make_context(cmd.name or "stigmer", list(rest))  # parses and checks values; runs nothing
    ctx.close()


def manifests() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / "kubernetes" / "stigmer.yaml").read_text()) if doc]


def containers() -> list[dict[str, Any]]:
    return [
        c for doc in manifests() if doc["kind"] == "Deployment" for c in doc["spec"]["template"]["spec"]["containers"]
    ]


@pytest.mark.parametrize("container", containers(), ids=lambda c: c["name"])
def test_every_manifest_flag_exists(container: dict[str, Any]) -> None:
    check_args(list(container["args"]))


def test_every_manifest_variable_is_read_by_stigmer() -> None:
    secret = next(doc for doc in manifests() if doc["kind"] == "Secret")
    assert set(secret["stringData"]) <= known_variables(), set(secret["stringData"]) - known_variables()


@pytest.mark.parametrize("container", containers(), ids=lambda c: c["name"])
def test_probes_ask_for_the_whole_server_not_temporal(container: dict[str, Any]) -> None:
    probes = [container[key] for key in ("readinessProbe", "livenessProbe") if key in container]
    assert probes, "every container has a probe"
    for probe in probes:
        assert probe["grpc"]["service"] == ""  # "stigmer.temporal" would restart pods in a Temporal outage


def test_every_procfile_command_exists() -> None:
    lines = [line for line in (DEPLOY / "Procfile").read_text().splitlines() if line and not line.startswith("#")]
    assert lines
    for line in lines:
        _, _, text = line.partition(":")
        words = shlex.split(text)
        assert words[0] == "stigmer"
        check_args(words[1:])
