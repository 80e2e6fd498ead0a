"""Which processes a benchmark started, and making sure every one of them has stopped."""

from __future__ import annotations

import contextlib
import time

import psutil


def descendants() -> set[int]:
    """Live processes below this one, except multiprocessing's resource tracker.

    The tracker is this interpreter's own helper (dask's worker processes and loky start it): it
    exits when this process exits, so it is not something the benchmark left behind.
    """
    alive = set()
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            if any("resource_tracker" in part for part in child.cmdline()):
                continue
            alive.add(child.pid)
    return alive


def leftover_processes(before: set[int], timeout: float = 15.0) -> list[str]:
    """Wait up to ``timeout`` for every child started since ``before`` to exit; describe those still alive."""
    deadline = time.monotonic() + timeout
    left = descendants() - before
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = descendants() - before
    described = []
    for pid in sorted(left):
        with contextlib.suppress(psutil.NoSuchProcess):
            described.append(f"{pid} {' '.join(psutil.Process(pid).cmdline())[:120]}")
    return described


def stop_leftovers(before: set[int], timeout: float = 5.0) -> None:
    """Terminate (then kill) every child started since ``before`` that is still alive."""
    processes = []
    for pid in descendants() - before:
        with contextlib.suppress(psutil.NoSuchProcess):
            process = psutil.Process(pid)
            process.terminate()
            processes.append(process)
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(alive, timeout=timeout)
