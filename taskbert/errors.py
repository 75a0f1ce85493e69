"""The exceptions taskbert raises for problems a user can fix.

Every message is one line naming the file, key or line, the bad value and what is allowed.
The CLI turns these into that line on stderr and exit code 2 (bad input) with no traceback.
"""


class TaskbertError(Exception):
    """Base class of every error that is the user's input, not a bug."""

    exit_code = 2


class SpecError(TaskbertError):
    """A spec file or an override is malformed or names something invalid."""


class DataError(TaskbertError):
    """A data file is missing, empty, unreadable or holds a bad record."""


class UnknownNameError(TaskbertError, KeyError):
    """A registry was asked for a name it does not hold."""

    def __str__(self):  # KeyError quotes its argument; we want the plain line
        return str(self.args[0]) if self.args else ""


class RunError(TaskbertError):
    """A run that started and then failed (e.g. a NaN loss); exit code 1."""

    exit_code = 1
