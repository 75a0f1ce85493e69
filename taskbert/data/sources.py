"""Where a split's data comes from: a path (a file, or a folder a reader takes whole) or a
hub dataset given as a mapping ``{hub: NAME, config:, split:, revision:}``.

The core knows only these two shapes; readers give them meaning. A mapping is read by the
reader named :data:`HUB_FORMAT` (the ``datasets`` plugin registers it). What a source holds
is recorded in ``manifest.json`` by :func:`source_identity`: the SHA-256 of a file, of every
file of a folder, or what the hub reader reports (the dataset's fingerprint).
"""

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from typing import Optional

from ..errors import SpecError

#: the reader of a mapping source
HUB_FORMAT = "hub"
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class HubSource:
    """``data.<split>: {hub: NAME, ...}`` — a dataset on the Hugging Face hub (or in its
    local cache), loaded with ``datasets.load_dataset(hub, config, split=, revision=)``."""

    hub: str = field(metadata={"help": "dataset id as on the hub: imdb, nyu-mll/glue, rajpurkar/squad_v2"})
    config: Optional[str] = field(default=None, metadata={"help": "configuration name (glue: mnli)"})
    split: Optional[str] = field(default=None, metadata={
        "help": "the dataset's split; default: the data key (train, validation, test)"})
    revision: Optional[str] = field(default=None, metadata={"help": "git revision (commit, tag, branch) to pin"})
    trust_remote_code: bool = field(default=False, metadata={
        "help": "let a dataset run its own loading script; off unless you trust it"})

    def __str__(self):
        parts = [f"config {self.config}"] if self.config else []
        parts += [f"split {self.split}"] + ([f"revision {self.revision}"] if self.revision else [])
        return f"{self.hub} ({', '.join(parts)})"


def resolve_sources(data, ctx, key="data"):
    """``data`` (a DataSpec) with each mapping source checked into a :class:`HubSource`
    (errors name the spec file and ``key.split``, with a did-you-mean for a misspelt key)."""
    from ..config.schema import build

    changes = {}
    for split in SPLITS:
        value = getattr(data, split)
        if isinstance(value, dict):
            if "hub" not in value:
                raise SpecError(f"{ctx['file']}: {key}.{split}: a mapping names a hub dataset and needs "
                                f"'hub' (e.g. {{hub: imdb, split: {split}}}); for a local file or folder "
                                f"give its path")
            source = build(HubSource, value, f"{key}.{split}", ctx)
            if not source.hub.strip():
                raise SpecError(f"{ctx['file']}: {key}.{split}.hub: must name a dataset, got {source.hub!r}")
            changes[split] = source if source.split else dataclasses.replace(source, split=split)
    return dataclasses.replace(data, **changes) if changes else data


def is_hub(source):
    """True for a hub dataset source (a :class:`HubSource`)."""
    return isinstance(source, HubSource)


def folder_sha256(folder):
    """SHA-256 over the relative names and contents of every file under ``folder``."""
    from .splits import file_sha256

    digest = hashlib.sha256()
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            digest.update(f"{os.path.relpath(path, folder)}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def source_identity(source):
    """What ``manifest.json`` records for a source, and what ``--resume`` and caches compare:
    ``{"path", "sha256"}`` for a file or a folder; for a hub dataset its keys and what the
    hub reader's ``identity(source)`` returns (``fingerprint``)."""
    from .splits import file_sha256

    if not is_hub(source):
        digest = folder_sha256(source) if os.path.isdir(source) else file_sha256(source)
        return {"path": source, "sha256": digest}
    from ..plugins.manager import registries

    reader = registries().readers.get(HUB_FORMAT, where="data: hub dataset reader")
    identity = getattr(reader, "identity", None)
    plain = {k: v for k, v in dataclasses.asdict(source).items() if v is not None}
    return {**plain, **(identity(source) if identity else {})}


def same_data(saved, now):
    """True when two :func:`source_identity` records name the same bytes (``sha256`` or
    ``fingerprint``, whichever the saved one holds; an older manifest has only ``sha256``)."""
    for key in ("sha256", "fingerprint"):
        if key in saved:
            return saved[key] == now.get(key)
    return True
