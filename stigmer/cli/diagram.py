"""``stigmer diagram``: the connection lifecycle graph."""

from __future__ import annotations

from pathlib import Path

import click

from statemachine.diagram import FORMATS, DiagramError, Format, render


@click.command()
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="mermaid", show_default=True,
              help="mermaid needs nothing extra; dot is Graphviz source; svg needs Graphviz's `dot` program.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True, path_type=Path),
              help="Write to FILE instead of standard output (required for svg on a terminal).")
def diagram(fmt: Format, output: Path | None) -> None:
    """Print the Temporal connection lifecycle as a state diagram.

    Six states (DISCONNECTED, CONNECTING, CONNECTED, UNHEALTHY, RECONNECTING, STOPPED) and the
    eight triggers between them. Workers run and workflow creators are injected exactly while
    the state is CONNECTED.

    \b
    Examples:
      stigmer diagram > lifecycle.mmd
      stigmer diagram --format dot | dot -Tpng > lifecycle.png
      stigmer diagram --format svg -o lifecycle.svg
    """
    try:
        content = render(fmt)
    except DiagramError as err:
        raise click.ClickException(str(err)) from err
    data = content.encode() if isinstance(content, str) else content
    if output is None:
        click.echo(data, nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(data)
        click.echo(f"Wrote {fmt} diagram to {output}", err=True)
