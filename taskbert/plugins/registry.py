"""A name -> object table that refuses duplicates and explains unknown names."""

import difflib

from ..errors import TaskbertError, UnknownNameError


class Registry:
    """Holds objects by name for one kind of thing (tasks, readers, metrics...).

    ``register`` raises on a name already taken, so two plugins can never silently
    shadow each other; ``get`` raises :class:`UnknownNameError` listing the known names.
    """

    def __init__(self, kind):
        self.kind = kind
        self._items = {}
        self._owners = {}
        self.note = ""  # appended to 'unknown name' errors (e.g. which plugins were filtered out)

    def register(self, name, obj, owner=None):
        """Add ``obj`` under ``name``; raise if the name is already registered."""
        if not isinstance(name, str) or not name:
            raise TaskbertError(f"{self.kind} names must be non-empty strings, got {name!r}")
        if name in self._items:
            raise TaskbertError(
                f"duplicate {self.kind} {name!r}: registered by {self._owners[name]} "
                f"and again by {owner or 'unknown plugin'}"
            )
        self._items[name] = obj
        self._owners[name] = owner or "unknown plugin"
        return obj

    def get(self, name, where=""):
        """Return the object for ``name`` or raise, listing the known names."""
        if name in self._items:
            return self._items[name]
        known = ", ".join(sorted(self._items)) or "none"
        close = difflib.get_close_matches(str(name), list(self._items), n=1)
        if not close:   # 'f1' for 'macro_f1', 'micro_f1': a part of a longer name
            close = [k for k in sorted(self._items) if str(name) in k.split("_")]
        names = [repr(c) for c in close]
        hint = f" (did you mean {' or '.join([', '.join(names[:-1]), names[-1]] if len(names) > 1 else names)}?)" if close else ""
        prefix = f"{where}: " if where else ""
        raise UnknownNameError(f"{prefix}unknown {self.kind} {name!r}{hint}; known: {known}{self.note}")

    def owner(self, name):
        """Which plugin registered ``name``."""
        return self._owners[name]

    def names(self):
        """Sorted registered names."""
        return sorted(self._items)

    def __contains__(self, name):
        return name in self._items

    def __len__(self):
        return len(self._items)
