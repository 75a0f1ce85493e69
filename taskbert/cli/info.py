"""``taskbert tasks`` and ``taskbert plugins``: what is registered and who registered it."""

import json

import click

from .main import cli, friendly


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@friendly
def tasks(as_json):
    """List the registered tasks and the plugin that provides each."""
    from ..plugins.manager import registries

    regs = registries()
    rows = [{"name": n, "plugin": regs.tasks.owner(n), "description": regs.tasks.get(n).description}
            for n in regs.tasks.names()]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    width = max((len(r["name"]) for r in rows), default=4)
    for r in rows:
        click.echo(f"{r['name']:<{width}}  {r['description']}  [{r['plugin']}]")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@friendly
def plugins(as_json):
    """List loaded plugins, where they come from and the hooks they implement."""
    from ..plugins.manager import plugin_list

    rows = plugin_list()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['name']}  ({r['distribution']})  hooks: {', '.join(r['hooks'])}")
