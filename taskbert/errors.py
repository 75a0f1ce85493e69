"""The exceptions taskbert raises for problems a user can fix.

Every message is one line naming the file, key or line, the bad value and what is allowed.
The CLI turns these into that line on stderr and exit code 2 (bad input) with no traceback.
A message quotes values from the user's files, so ``str()`` of every error escapes what would
break the line or fool a terminal (see :func:`printable`).
"""


def printable(text):
    """``text`` with each character that is not printable (newlines, tabs, NUL and other control
    characters, bidi overrides such as U+202E and other format characters) written as its
    Python escape (``\\n``, ``\\x00``, ``\\u202e``): one line, shown as it is stored."""
    return "".join(ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
                   for ch in text)


class TaskbertError(Exception):
    """Base class of every error that is the user's input, not a bug."""

    exit_code = 2

    def __str__(self):
        return printable(super().__str__())


class SpecError(TaskbertError):
    """A spec file or an override is malformed or names something invalid."""


class DataError(TaskbertError):
    """A data file is missing, empty, unreadable or holds a bad record."""


class UnknownNameError(TaskbertError, KeyError):
    """A registry was asked for a name it does not hold."""

    def __str__(self):  # KeyError quotes its argument; we want the plain line
        return printable(str(self.args[0])) if self.args else ""


class RunError(TaskbertError):
    """A run that started and then failed (e.g. a NaN loss); exit code 1."""

    exit_code = 1
