"""The instructions ``WorkerState`` returns and the worker agent (``agent.py``) carries out.

Each is addressed to the scheduler, to one processor (by the id the state gave it), or to the
agent itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from scaler.protocol.messages import Message, Task


@dataclass(frozen=True, slots=True)
class SendToScheduler:
    """Instruction: send a message to the scheduler."""

    message: Message


@dataclass(frozen=True, slots=True)
class StartProcessor:
    """Instruction: start a processor under this id, then call ``on_processor_started(processor_id)``."""

    processor_id: int


@dataclass(frozen=True, slots=True)
class RunTask:
    """Instruction: give this task to this (idle) processor."""

    processor_id: int
    task: Task


@dataclass(frozen=True, slots=True)
class SendToProcessor:
    """Instruction: send a message (an ``ObjectInstruction``) to this idle processor."""

    processor_id: int
    message: Message


@dataclass(frozen=True, slots=True)
class KillProcessor:
    """Instruction: kill this processor; the state has already forgotten it."""

    processor_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class ExitWorker:
    """Instruction: the worker must exit."""

    reason: str


WorkerInstruction = SendToScheduler | StartProcessor | RunTask | SendToProcessor | KillProcessor | ExitWorker
