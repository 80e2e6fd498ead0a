"""Task functions for the fault tests (shipped to workers by value, see conftest).

Ledger tasks append one line per event to a file shared by every process:
``<kind> <task index> <pid> <unix time>``. Each line is one small ``write`` to a file opened
with ``O_APPEND``, so lines from concurrent processes never interleave.
"""

from __future__ import annotations

import os
import subprocess
import time

# Shared with the integration tests rather than written twice.
from tests.integration.tasks import UnpicklableError, raise_unpicklable  # noqa: F401
from tests.integration.tasks import return_unpicklable as return_lock  # noqa: F401


def _append(path: str, kind: str, index: int) -> None:
    with open(path, "a") as ledger:
        ledger.write(f"{kind} {index} {os.getpid()} {time.time():.6f}\n")


def ledger_sleep(path: str, index: int, seconds: float) -> int:
    """Note the start, sleep, note the end; return ``index * index``."""
    _append(path, "start", index)
    time.sleep(seconds)
    _append(path, "done", index)
    return index * index


def ledger_start(path: str, index: int, seconds: float) -> int:
    """Note only the start (with its time), sleep; return ``index * index``."""
    _append(path, "start", index)
    time.sleep(seconds)
    return index * index


def sleep_square(index: int, seconds: float) -> int:
    time.sleep(seconds)
    return index * index


def processor_pid(seconds: float = 0.0) -> int:
    time.sleep(seconds)
    return os.getpid()


def die() -> None:
    """A poison task: its processor exits at once, every time."""
    os._exit(1)


class UnrebuildableError(Exception):
    """Pickles fine, but unpickling calls ``UnrebuildableError(message)``, which lacks ``code``."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def raise_unrebuildable() -> None:
    raise UnrebuildableError("boom", 7)


def die_noting(path: str) -> None:
    """A poison task that first notes each attempt in a ledger."""
    _append(path, "start", 0)
    os._exit(1)


def _spawn_sleep(path: str, new_session: bool) -> subprocess.Popen[bytes]:
    """Start ``sleep 300`` and append its pid to ``path`` (one line, one ``write``)."""
    child = subprocess.Popen(["sleep", "300"], start_new_session=new_session)
    with open(path, "a") as pids:
        pids.write(f"{child.pid}\n")
    return child


def spawn_sleep_and_wait(path: str, new_session: bool = False) -> int:
    """A task that starts a long-lived program and waits for it, as ``subprocess.run`` would."""
    return _spawn_sleep(path, new_session).wait()


def spawn_sleep_and_die(path: str) -> None:
    """A task whose processor crashes right after it started a long-lived program."""
    _spawn_sleep(path, new_session=False)
    os._exit(1)
