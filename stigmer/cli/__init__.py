"""The ``stigmer`` command line. ``asyncio.run`` and logging sinks are set up only at this boundary."""

from __future__ import annotations

import click

from stigmer import __version__
from stigmer.cli.agent_execution import agent_execution
from stigmer.cli.diagram import diagram
from stigmer.cli.server import server, worker
from stigmer.cli.server_control import logs, stop
from stigmer.cli.workflow import workflow
from stigmer.cli.workflow_execution import workflow_execution


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="stigmer")
def cli() -> None:
    """Stigmer: run agent and workflow executions on Temporal, whatever order things start in.

    \b
    Start the server (it serves even while Temporal is down, and connects when it can):
      stigmer server start --managed-temporal
    Draw the connection lifecycle:
      stigmer diagram
    """


server.add_command(stop)
server.add_command(logs)
cli.add_command(server)
cli.add_command(agent_execution)
cli.add_command(diagram)
cli.add_command(workflow)
cli.add_command(workflow_execution)
cli.add_command(worker)


def main() -> None:
    cli(prog_name="stigmer")
