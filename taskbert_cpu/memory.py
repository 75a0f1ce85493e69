"""glibc malloc settings for training on a CPU."""

MMAP_THRESHOLD = 256 << 20


def keep_freed_memory():
    """Let glibc's malloc reuse freed blocks of up to 256 MB instead of unmapping them.

    By default glibc maps every block above 32 MB fresh and unmaps it on free, so a training
    step that frees and re-allocates such blocks (the embedding table's gradient, for one)
    pays page faults and kernel zeroing each time (``bench/RESULTS.md`` has the cost).
    Process-wide and idempotent; on Linux with glibc only, and not when the user set
    ``MALLOC_MMAP_THRESHOLD_`` or ``GLIBC_TUNABLES`` (their choice wins). Returns
    whether it was applied."""
    import ctypes
    import os
    import sys

    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ \
            or "GLIBC_TUNABLES" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3    # mallopt parameter numbers (malloc.h)
        return bool(libc.mallopt(m_mmap_threshold, MMAP_THRESHOLD)) and \
            bool(libc.mallopt(m_trim_threshold, 2 * MMAP_THRESHOLD))
    except (OSError, AttributeError):   # not glibc
        return False
