"""The ``taskbert`` command line: the click group and its helpers in :mod:`.main`, one
module per command beside it. Importing this package registers every built-in command;
plugins add theirs through the ``taskbert_register_commands`` hook."""

from . import debug, export, info, predict, report, run, scaffold, serve  # noqa: F401  (register)
from .main import SET_HELP, cli, friendly, main

__all__ = ["cli", "main", "friendly", "SET_HELP"]
