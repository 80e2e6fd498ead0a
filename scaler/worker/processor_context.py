"""What code running inside a processor may know and tell about its processor.

The processor installs its pipe to the agent here before running tasks. A ``Client`` created
inside a task reads ``scheduler_address()`` (and ``scheduler_key_files()``, the paths of the
worker's key files when its scheduler requires keys) to reach the worker's own scheduler, and a future
that is about to block reports it through ``blocked()``: while the task waits on other tasks,
the agent runs the worker's next tasks on another processor, so nested tasks cannot deadlock.
``current_task_id()`` names the task this processor runs: a client made inside it sends that id
as each task's ``parent_task_id``, so the scheduler can stop the children of a stopped parent.
Outside a processor, every function here is a no-op.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Sequence
from multiprocessing.connection import Connection

from scaler.protocol.codec import encode, encode_one
from scaler.protocol.messages import Message, ProcessorBlocked

SCHEDULER_ADDRESS_VARIABLE = "SCALER_SCHEDULER_ADDRESS"
KEY_FILE_VARIABLE = "SCALER_KEY_FILE"  # paths only: secret bytes never go in the environment
SCHEDULER_KEY_FILE_VARIABLE = "SCALER_SCHEDULER_KEY_FILE"

_connection: Connection | None = None
_send_lock = threading.Lock()  # results, logs and block notices may come from several threads
_blocked_lock = threading.Lock()
_blocked_depth = 0  # how many waits of the current task are inside ``blocked()`` right now
_current_task_id = b""  # the task running in this processor (one at a time), or b"" between tasks


def install(connection: Connection, scheduler_address: str, key_files: tuple[str, str] | None = None) -> None:
    """Called once by the processor at start-up; ``key_files`` is (worker key pair, scheduler key)."""
    global _connection
    _connection = connection
    os.environ[SCHEDULER_ADDRESS_VARIABLE] = scheduler_address
    if key_files is None:
        os.environ.pop(KEY_FILE_VARIABLE, None)
        os.environ.pop(SCHEDULER_KEY_FILE_VARIABLE, None)
    else:
        os.environ[KEY_FILE_VARIABLE], os.environ[SCHEDULER_KEY_FILE_VARIABLE] = key_files


def in_processor() -> bool:
    """True inside a worker's processor."""
    return _connection is not None


def scheduler_address() -> str | None:
    """The address of the scheduler this processor's worker serves, or None outside a worker."""
    return os.environ.get(SCHEDULER_ADDRESS_VARIABLE) if _connection is not None else None


def scheduler_key_files() -> tuple[str, str] | None:
    """(the worker's key pair file, the scheduler's public key file), or None without keys or outside a worker."""
    if _connection is None:
        return None
    key_file, scheduler_key_file = os.environ.get(KEY_FILE_VARIABLE), os.environ.get(SCHEDULER_KEY_FILE_VARIABLE)
    return (key_file, scheduler_key_file) if key_file and scheduler_key_file else None


def send_to_agent(message: Message) -> None:
    """Send one message to the agent (thread-safe)."""
    if _connection is None:
        return
    frame = encode_one(message)
    with _send_lock:
        _connection.send_bytes(frame)


def send_all_to_agent(messages: Sequence[Message]) -> None:
    """Send several messages to the agent in one frame (thread-safe)."""
    if _connection is None or not messages:
        return
    frame = encode(messages)
    with _send_lock:
        _connection.send_bytes(frame)


@contextlib.contextmanager
def blocked() -> Iterator[None]:
    """Wrap a wait on other tasks' results, so the worker can run them meanwhile.

    Waits may nest or overlap (several threads of one task): the agent hears ``True`` when the
    first one starts and ``False`` when the last one ends.
    """
    if _connection is None:
        yield
        return
    global _blocked_depth
    with _blocked_lock:
        _blocked_depth += 1
        if _blocked_depth == 1:
            send_to_agent(ProcessorBlocked(True))
    try:
        yield
    finally:
        with _blocked_lock:
            if _blocked_depth > 0:  # 0 if a new task started meanwhile (a leftover thread of an old task)
                _blocked_depth -= 1
                if _blocked_depth == 0:
                    send_to_agent(ProcessorBlocked(False))


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
