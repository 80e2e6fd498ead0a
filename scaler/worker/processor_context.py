"""The processor's side of the task context: its pipe to the agent.

The processor installs its pipe (a ``PipeChannel``, ``pipe.py``) here before running tasks
(``install``), which also enters the
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
from scaler.worker.pipe import PipeChannel

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

_channel: PipeChannel | None = None
_owned = False
_send_lock = threading.Lock()  # results, logs and block notices may come from several threads


def install(
    connection: Connection | PipeChannel, scheduler_address: str, key_files: tuple[str, str] | None = None
) -> None:
    """Called once by the processor at start-up; ``key_files`` is (worker key pair, scheduler key)."""
    global _channel, _owned
    if isinstance(connection, PipeChannel):
        _channel, _owned = connection, False
    else:  # made here from a bare Connection (tests): its own handle is closed by uninstall
        _channel, _owned = PipeChannel(connection), True
    task_context.enter(scheduler_address, key_files, _report_blocked)


def uninstall() -> None:
    """Forget the pipe and leave the task context (tests that install it in their own process)."""
    global _channel, _owned
    if _owned and _channel is not None:
        _channel.detach()
    _channel, _owned = None, False
    task_context.leave()


def send_to_agent(message: Message) -> None:
    """Send one message to the agent (thread-safe)."""
    channel = _channel
    if channel is None:
        return
    with _send_lock:
        channel.send((message,))


def send_all_to_agent(messages: Sequence[Message]) -> None:
    """Send several messages to the agent in one frame (thread-safe)."""
    channel = _channel
    if channel is None or not messages:
        return
    with _send_lock:
        channel.send(messages)


def _report_blocked(waiting: bool) -> None:
    send_to_agent(ProcessorBlocked(waiting))
