"""The processor's side of the task context: its pipe to the agent.

The processor installs its pipe here before running tasks (``install``), which also enters the
neutral task context (``scaler.utility.task_context``) that a ``Client`` inside a task reads:
the scheduler's address and keys, the running task's id, and ``blocked()``, whose notices travel
to the agent as ``ProcessorBlocked`` through this pipe. Those names are re-exported here for
code that already imports them from the worker. Outside a processor, every function here is a
no-op.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection

from scaler.protocol.codec import encode, encode_one
from scaler.protocol.messages import Message, ProcessorBlocked
from scaler.utility import task_context
from scaler.utility.task_context import (
    KEY_FILE_VARIABLE,
    SCHEDULER_ADDRESS_VARIABLE,
    SCHEDULER_KEY_FILE_VARIABLE,
    blocked,
    current_task_id,
    in_processor,
    scheduler_address,
    scheduler_key_files,
    task_finished,
    task_started,
)

__all__ = [
    "KEY_FILE_VARIABLE",
    "SCHEDULER_ADDRESS_VARIABLE",
    "SCHEDULER_KEY_FILE_VARIABLE",
    "blocked",
    "current_task_id",
    "in_processor",
    "install",
    "scheduler_address",
    "scheduler_key_files",
    "send_all_to_agent",
    "send_to_agent",
    "task_finished",
    "task_started",
    "uninstall",
]

_connection: Connection | None = None
_send_lock = threading.Lock()  # results, logs and block notices may come from several threads


def install(connection: Connection, scheduler_address: str, key_files: tuple[str, str] | None = None) -> None:
    """Called once by the processor at start-up; ``key_files`` is (worker key pair, scheduler key)."""
    global _connection
    _connection = connection
    task_context.enter(scheduler_address, key_files, _report_blocked)


def uninstall() -> None:
    """Forget the pipe and leave the task context (tests that install it in their own process)."""
    global _connection
    _connection = None
    task_context.leave()


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


def _report_blocked(waiting: bool) -> None:
    send_to_agent(ProcessorBlocked(waiting))
