"""Keep freed big blocks for reuse in scaler's own processes (scheduler, worker agent, processor).

Every big payload lands in fresh memory in each process it crosses (a ZeroMQ frame, a pipe
read), and a fresh page costs a page fault: about 4 µs for each 4 KiB here, so 1 ms per MiB,
as much as the copy itself. glibc serves a block of 1 MiB with its own ``mmap`` and unmaps it
when it is freed (its threshold only rises after it has freed one, and not for every thread's
arena), so the next payload faults in its pages all over again. ``mallopt`` with a fixed
threshold of 32 MiB (the most glibc's own sliding threshold reaches) serves such blocks from the
heap, and a trim threshold of 128 MiB keeps what was freed for the next payload.

Measured with ``benchmarks/profile_processes.py`` (300 tasks of 1 MiB arguments): the
scheduler's minor faults fell from about 190 to 40-70 per task, and the CPU of all processes from
7.4-8.4 to 4.9-5.2 ms per task. The cost: a process may hold up to 128 MiB it freed, as
allocators such as jemalloc do. Not applied in a user's process (the client): how a program's
allocator behaves is its own choice. A no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import sys

MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 128 * 1024 * 1024
_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> bool:
    """Set glibc's thresholds (see the module docstring); True if they were set."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it (musl's mallopt does nothing)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
