"""The ``taskbert`` command line (click).

Exit codes: 0 ok, 1 a run that failed, 2 bad input (one line on stderr, no traceback).
Plugins add commands through the ``taskbert_register_commands`` hook.
"""

import functools
import os
import re
import sys

import click

from ..errors import TaskbertError

SET_HELP = "override a spec value, e.g. --set train.lr=3e-5 (repeatable)"


def set_by(message, overrides):
    """`` (set by --set KEY=VALUE)`` when ``message`` names a key that a ``--set`` override
    gave (checks after the spec is read, such as a data file or a logger, name the key but
    not where its value came from); empty otherwise or when the message says so already."""
    if not overrides or "--set" in message:
        return ""
    def names(assignment):   # the key, or a value long enough to tell (a file name given by --set)
        key, _, value = assignment.partition("=")
        value = value.strip().strip("'\"")
        return re.search(rf"(^|[\s:(]){re.escape(key.strip())}([\[:.= ]|$)", message) or \
            (len(value) >= 5 and not value.replace(".", "").isdigit() and value in message)
    named = [a for a in overrides if names(a)]
    return f" (set by {', '.join(f'--set {a}' for a in named)})" if named else ""


def friendly(fn):
    """Turn TaskbertError into one line and its exit code; keep tracebacks for bugs. A
    command's ``--set`` overrides (its ``overrides`` argument) that the line names are said."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TaskbertError as exc:
            click.echo(f"error: {exc}{set_by(str(exc), kwargs.get('overrides'))}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
    return wrapper


class _Group(click.Group):
    """The ``taskbert`` group: plugin commands join it on first lookup, so ``main()`` and a
    test's ``CliRunner().invoke(cli, [...])`` see the same commands."""

    plugins_added = False

    def _plugin_commands(self):
        if not self.plugins_added:
            self.plugins_added = True
            _add_plugin_commands()

    def list_commands(self, ctx):
        self._plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx, name):
        if name not in self.commands:
            self._plugin_commands()
        return super().get_command(ctx, name)


@click.group(cls=_Group)
@click.version_option(package_name="taskbert")
def cli():
    """Fine-tune pretrained BERT-style encoders for NLP tasks from YAML specs."""


def _add_plugin_commands():
    try:
        from ..plugins.manager import get_plugin_manager

        get_plugin_manager().hook.taskbert_register_commands(cli=cli)
    except TaskbertError:  # a broken plugin must not hide the built-in commands: --help
        pass               # still works; a command that needs the plugins stops with its line


def main():
    """Console-script entry point."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cli(prog_name="taskbert")
