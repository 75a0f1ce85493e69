"""Files that are complete or absent.

Every file is written to a temporary name, flushed, fsynced and renamed; folders
(``best/``, ``checkpoint/step-N/``, an export) are built under a temporary name beside their
final place and swapped in, so a reader never sees half of one and a crash leaves either the
old or the new one. Permissions follow the umask, as ``open`` and ``os.makedirs`` would.
"""

import json
import os
import shutil
import tempfile


def _umask():
    """The process umask (read without changing it where /proc tells; else set and restored)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_folder(prefix, parent):
    """``tempfile.mkdtemp`` with the permissions ``os.makedirs`` would give (mkdtemp makes
    0700 folders, so a shared ``best/`` would be unreadable to the rest of a team)."""
    tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def save_weights(state, path, metadata=None):
    """safetensors' ``save_file`` (which makes the file 0600), then the umask's permissions."""
    from safetensors.torch import save_file

    save_file(state, path, metadata=metadata)
    os.chmod(path, 0o666 & ~_umask())


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, data, mode="w"):
    """Write text or bytes to ``path`` atomically (temp file, fsync, rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())   # what open() would give; mkstemp makes 0600
        with os.fdopen(fd, mode + ("b" if isinstance(data, bytes) else ""),
                       **({} if isinstance(data, bytes) else {"encoding": "utf-8"})) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(folder)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_json(path, obj):
    """Write ``obj`` as indented JSON atomically."""
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def fsync_tree(folder):
    """fsync every file in a folder (before it is renamed into place)."""
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as fh:
                os.fsync(fh.fileno())
        _fsync_dir(root)


def swap_in(tmp_folder, final_folder):
    """Replace ``final_folder`` by the complete ``tmp_folder`` (two renames). A crash
    between the renames leaves ``final_folder.old``, which :func:`recover_folder` puts back."""
    fsync_tree(tmp_folder)
    old = None
    if os.path.exists(final_folder):
        old = final_folder + ".old"
        if os.path.exists(old):
            shutil.rmtree(old)
        os.replace(final_folder, old)
    os.replace(tmp_folder, final_folder)
    _fsync_dir(os.path.dirname(os.path.abspath(final_folder)))
    if old:
        shutil.rmtree(old, ignore_errors=True)


def recover_folder(final_folder):
    """Undo a :func:`swap_in` cut short: restore ``final_folder`` from ``.old`` when it is
    missing, drop a stale ``.old`` when it is not. True when something was restored."""
    old = final_folder + ".old"
    if not os.path.isdir(old):
        return False
    if os.path.exists(final_folder):
        shutil.rmtree(old, ignore_errors=True)
        return False
    os.replace(old, final_folder)
    return True


def remove_leftovers(folder):
    """Delete the temporary files and folders a killed write left in ``folder``
    (``.tmp-*`` from :func:`atomic_write`, ``.<name>.tmp-*`` from :func:`new_temp_folder`)."""
    for name in os.listdir(folder):
        if name.startswith(".") and (name.startswith(".tmp-") or ".tmp-" in name):
            path = os.path.join(folder, name)
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)


def new_temp_folder(final_folder):
    """An empty folder beside ``final_folder`` to build it in."""
    parent = os.path.dirname(os.path.abspath(final_folder))
    os.makedirs(parent, exist_ok=True)
    return temp_folder(f".{os.path.basename(final_folder)}.tmp-", parent)
