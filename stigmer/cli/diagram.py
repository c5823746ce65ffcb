"""``stigmer diagram``: the connection lifecycle graph."""

from __future__ import annotations

from pathlib import Path

import click

from statemachine.diagram import FORMATS, DiagramError, Format, render
from statemachine.states import State
from stigmer.cli.common import address_option, api, call


@click.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="mermaid",
    show_default=True,
    help="mermaid needs nothing extra; dot is Graphviz source; svg needs Graphviz's `dot` program.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to FILE instead of standard output (required for svg on a terminal).",
)
@click.option("--live", is_flag=True, help="Ask the running server for its state and highlight it.")
@address_option
def diagram(fmt: Format, output: Path | None, live: bool, address: str) -> None:
    """Print the Temporal connection lifecycle as a state diagram.

    Six states (DISCONNECTED, CONNECTING, CONNECTED, UNHEALTHY, RECONNECTING, STOPPED) and the
    eight triggers between them. Workers run and workflow creators are injected exactly while
    the state is CONNECTED.

    \b
    Examples:
      stigmer diagram > lifecycle.mmd
      stigmer diagram --format dot | dot -Tpng > lifecycle.png
      stigmer diagram --format svg -o lifecycle.svg
      stigmer diagram --live          # the running server's current state highlighted
    """
    current = _live_state(address) if live else None
    try:
        content = render(fmt, current=current)
    except DiagramError as err:
        raise click.ClickException(str(err)) from err
    data = content.encode() if isinstance(content, str) else content
    if output is None:
        click.echo(data, nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(data)
        click.echo(f"Wrote {fmt} diagram to {output}", err=True)


def _live_state(address: str) -> State:
    with api(address, 5.0) as conn:
        status = call(conn, "text", conn.client.status)
    click.echo(f"Temporal connection: {status.state}", err=True)
    return State[status.state]
