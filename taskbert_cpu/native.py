"""The one-pass hashed dropout kernel (``hashdrop.c``), built on first use with the system C
compiler and kept in ``$XDG_CACHE_HOME/taskbert/native`` (``~/.cache/taskbert/native``).

Why C: the torch version of the mask (:func:`taskbert_cpu.dropout.keep_mask`) is about fifteen
integer passes over memory, then a multiply; the kernel makes the same mask bit for bit in
registers and applies it in the same pass, forward and backward (the backward recomputes the
mask from its two keys, so nothing is saved for it). Why built here rather than at install:
it needs no torch headers (a build of well under a second), it is compiled for the machine it
runs on (``-march=native``, so the cached library is keyed by the CPU's flags as well as the
source), and installs stay pure Python. Where there is no C compiler, the build fails, or
``TASKBERT_NATIVE=0`` is set, :func:`library` returns None and the torch version runs: the
same masks and the same numbers, only slower.
"""

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("hashdrop.c")
FLAGS = ["-O3", "-march=native", "-std=c99", "-shared", "-fPIC"]
_KERNEL_ARGS = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_uint32, ctypes.c_uint32,
                ctypes.c_int32, ctypes.c_float]
_state = {"tried": False, "lib": None}


def cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "taskbert" / "native"


def _machine():
    """What ``-march=native`` depends on: the architecture and, on Linux, the CPU flags."""
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            flags = next((line for line in fh if line.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    return f"{platform.machine()} {flags}"


def _build(compiler, target):
    """Compile into a temporary file beside ``target``, then rename: a crash or a second
    process building at the same time never leaves a half-written library behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        subprocess.run([compiler, *FLAGS, "-o", tmp, str(SOURCE)], check=True, timeout=120,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def library_path(compiler):
    """Where the library built by ``compiler`` for this source, these flags and this CPU lives."""
    key = hashlib.sha256("\0".join([SOURCE.read_text(), " ".join(FLAGS), compiler, _machine()])
                         .encode()).hexdigest()[:16]
    return cache_dir() / f"hashdrop-{key}.so"


def _compiler():
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def library():
    """The loaded kernel library, or None (no compiler, a failed build, ``TASKBERT_NATIVE=0``,
    a big-endian machine). Decided once per process."""
    if _state["tried"]:
        return _state["lib"]
    _state["tried"] = True
    if os.environ.get("TASKBERT_NATIVE", "1") == "0" or sys.byteorder != "little":
        return None   # off, or a byte order the kernel's int16 halves do not follow
    compiler = _compiler()
    if compiler is None:
        log.info("hashed dropout kernel not built: no C compiler (cc, gcc or $CC)")
        return None
    target = library_path(compiler)
    try:
        if not target.exists():
            _build(compiler, target)
        try:
            lib = ctypes.CDLL(str(target))
        except OSError:              # a cached file that no longer loads: build it once more
            _build(compiler, target)
            lib = ctypes.CDLL(str(target))
        for name in ("hashdrop_f32", "hashdrop_bf16"):
            getattr(lib, name).argtypes = _KERNEL_ARGS
            getattr(lib, name).restype = None
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", None) or exc
        if isinstance(detail, bytes):
            detail = detail.decode(errors="replace").strip()
        log.info("hashed dropout kernel not built, the torch version runs: %s", detail)
        return None
    _state["lib"] = lib
    return lib
