"""Whether this code runs inside a task, and what it may know and tell there.

Both sides of a nested task use this module: the worker's processor enters the context once at
start-up (``enter``, through ``scaler.worker.processor_context``) and marks each task it runs
(``task_started`` / ``task_finished``); the client reads it. A ``Client`` created inside a task
reads ``scheduler_address()`` (and ``scheduler_key_files()``, the paths of the worker's key files
when its scheduler requires keys) to reach the worker's own scheduler, names the running task
(``current_task_id()``) as the parent of what it submits, and wraps every wait on other tasks in
``blocked()``, so the worker can run other tasks meanwhile and nested tasks cannot deadlock.
Outside a processor every function here is a no-op, and the module imports nothing from the
client or the worker.

The state is per process (a processor runs one task at a time); the lock guards the count of
waits, which several threads of one task may change at once.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator

SCHEDULER_ADDRESS_VARIABLE = "SCALER_SCHEDULER_ADDRESS"
KEY_FILE_VARIABLE = "SCALER_KEY_FILE"  # paths only: secret bytes never go in the environment
SCHEDULER_KEY_FILE_VARIABLE = "SCALER_SCHEDULER_KEY_FILE"

ReportBlocked = Callable[[bool], None]  # tells the processor's agent that the task waits (True) or not

_report_blocked: ReportBlocked | None = None  # set while inside a processor
_blocked_lock = threading.Lock()
_blocked_depth = 0  # how many waits of the current task are inside ``blocked()`` right now
_current_task_id = b""  # the task running in this processor (one at a time), or b"" between tasks


def enter(scheduler_address: str, key_files: tuple[str, str] | None, report_blocked: ReportBlocked) -> None:
    """Called once by the processor at start-up; ``key_files`` is (worker key pair, scheduler key)."""
    global _report_blocked
    _report_blocked = report_blocked
    os.environ[SCHEDULER_ADDRESS_VARIABLE] = scheduler_address
    if key_files is None:
        os.environ.pop(KEY_FILE_VARIABLE, None)
        os.environ.pop(SCHEDULER_KEY_FILE_VARIABLE, None)
    else:
        os.environ[KEY_FILE_VARIABLE], os.environ[SCHEDULER_KEY_FILE_VARIABLE] = key_files


def leave() -> None:
    """Forget the processor (tests that entered it in their own process)."""
    global _report_blocked, _blocked_depth, _current_task_id
    _report_blocked = None
    with _blocked_lock:
        _blocked_depth = 0
    _current_task_id = b""


def in_processor() -> bool:
    """True inside a worker's processor."""
    return _report_blocked is not None


def scheduler_address() -> str | None:
    """The address of the scheduler this processor's worker serves, or None outside a worker."""
    return os.environ.get(SCHEDULER_ADDRESS_VARIABLE) if _report_blocked is not None else None


def scheduler_key_files() -> tuple[str, str] | None:
    """(the worker's key pair file, the scheduler's public key file), or None without keys or outside a worker."""
    if _report_blocked is None:
        return None
    key_file, scheduler_key_file = os.environ.get(KEY_FILE_VARIABLE), os.environ.get(SCHEDULER_KEY_FILE_VARIABLE)
    return (key_file, scheduler_key_file) if key_file and scheduler_key_file else None


@contextlib.contextmanager
def blocked() -> Iterator[None]:
    """Wrap a wait on other tasks' results, so the worker can run them meanwhile.

    Waits may nest or overlap (several threads of one task): the agent hears ``True`` when the
    first one starts and ``False`` when the last one ends.
    """
    report = _report_blocked
    if report is None:
        yield
        return
    global _blocked_depth
    with _blocked_lock:
        _blocked_depth += 1
        if _blocked_depth == 1:
            report(True)
    try:
        yield
    finally:
        with _blocked_lock:
            if _blocked_depth > 0:  # 0 if a new task started meanwhile (a leftover thread of an old task)
                _blocked_depth -= 1
                if _blocked_depth == 0:
                    report(False)


def current_task_id() -> bytes:
    """The id of the task running in this processor, or ``b""`` outside a task (and outside a processor)."""
    return _current_task_id


def task_started(task_id: bytes = b"") -> None:
    """Called by the processor before each task: waits of an earlier task no longer count."""
    global _blocked_depth, _current_task_id
    _current_task_id = task_id
    if _blocked_depth:
        with _blocked_lock:
            _blocked_depth = 0


def task_finished() -> None:
    """Called by the processor after each task: a thread it left behind submits top-level tasks."""
    global _current_task_id
    _current_task_id = b""
