"""Every message that crosses a socket, as one typed class each.

Messages are plain slotted dataclasses; their field annotations are the schema that
``scaler.protocol.codec`` validates on decode. A message's wire ``TYPE`` code never changes
meaning: a new or changed message needs a new code and a new ``PROTOCOL_VERSION``.
Payload fields (functions, arguments, results) are opaque bytes: only clients and worker
processors ever unpickle them, never the scheduler.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar


class TaskStatus(enum.IntEnum):
    """How a task ended; anything but ``SUCCESS`` becomes an exception at the client."""

    SUCCESS = 0
    FAILED = 1  # user code raised; payload is the pickled (exception, traceback text)
    PROCESSOR_DIED = 2  # payload is utf-8 text
    WORKER_DIED = 3  # payload is utf-8 text
    TIMEOUT = 4  # payload is utf-8 text
    REJECTED = 5  # the scheduler refused it; payload is utf-8 text


class CancelConfirmType(enum.IntEnum):
    """The scheduler's answer to a ``TaskCancel``."""

    CANCELED = 0
    CANCEL_FAILED = 1
    CANCEL_NOT_FOUND = 2


class DisconnectType(enum.IntEnum):
    """Why a client says goodbye."""

    DISCONNECT = 0
    SHUTDOWN = 1  # also asks the scheduler (and so the cluster) to stop


class ArgumentKind(enum.IntEnum):
    """How a task argument travels."""

    INLINE = 0  # serialized bytes inside the Task message


class Message:
    """Base of all messages; ``TYPE`` is the wire code."""

    __slots__ = ()
    TYPE: ClassVar[int] = -1


class Record:
    """Base of small structs nested inside messages (encoded as a msgpack array)."""

    __slots__ = ()


@dataclass(slots=True)
class TaskArgument(Record):
    """One argument of a task: ``name`` is empty for positional arguments."""

    name: str
    kind: ArgumentKind
    data: bytes


@dataclass(slots=True)
class Task(Message):
    """Run ``function_id(*args, **kwargs)``; ``function`` carries the pickled function the first time."""

    TYPE: ClassVar[int] = 1
    task_id: bytes
    function_id: bytes
    function: bytes
    args: list[TaskArgument]
    attempt: int


@dataclass(slots=True)
class TaskResult(Message):
    """The outcome of one attempt of a task."""

    TYPE: ClassVar[int] = 2
    task_id: bytes
    status: TaskStatus
    payload: bytes
    attempt: int


@dataclass(slots=True)
class TaskCancel(Message):
    """Ask that a task be cancelled, whether queued or running."""

    TYPE: ClassVar[int] = 3
    task_id: bytes


@dataclass(slots=True)
class TaskCancelConfirm(Message):
    """The answer to a ``TaskCancel``."""

    TYPE: ClassVar[int] = 4
    task_id: bytes
    confirm: CancelConfirmType


@dataclass(slots=True)
class ClientHeartbeat(Message):
    """A client is alive; the scheduler echoes it."""

    TYPE: ClassVar[int] = 5
    timestamp: float


@dataclass(slots=True)
class ClientHeartbeatEcho(Message):
    """The scheduler is alive, as seen by a client."""

    TYPE: ClassVar[int] = 6
    timestamp: float
    scheduler_id: bytes  # changes when the scheduler restarts: the client's tasks are then lost


@dataclass(slots=True)
class WorkerHeartbeat(Message):
    """A worker is alive, and how loaded it is."""

    TYPE: ClassVar[int] = 7
    timestamp: float
    queued_tasks: int
    cpu_percent: float
    rss_bytes: int


@dataclass(slots=True)
class WorkerHeartbeatEcho(Message):
    """The scheduler is alive, as seen by a worker."""

    TYPE: ClassVar[int] = 8
    timestamp: float
    scheduler_id: bytes  # changes when the scheduler restarts: the worker's tasks are then void


@dataclass(slots=True)
class ClientDisconnect(Message):
    """A client leaves; with ``SHUTDOWN`` it also asks the scheduler to stop."""

    TYPE: ClassVar[int] = 9
    kind: DisconnectType


@dataclass(slots=True)
class ClientShutdownResponse(Message):
    """Whether a shutdown request was accepted, and if not, why."""

    TYPE: ClassVar[int] = 10
    accepted: bool
    reason: str


@dataclass(slots=True)
class DisconnectRequest(Message):
    """A worker leaves on purpose; its queued tasks go back to the scheduler's queue."""

    TYPE: ClassVar[int] = 11


@dataclass(slots=True)
class DisconnectResponse(Message):
    """The scheduler has taken back a leaving worker's tasks."""

    TYPE: ClassVar[int] = 12


@dataclass(slots=True)
class SchedulerShutdown(Message):
    """The scheduler is stopping; workers exit and clients fail their pending futures."""

    TYPE: ClassVar[int] = 13
    reason: str


@dataclass(slots=True)
class ClientDropped(Message):
    """The scheduler no longer serves this client (it timed out or left); its tasks were cancelled."""

    TYPE: ClassVar[int] = 14
    reason: str


ALL_MESSAGES: tuple[type[Message], ...] = (
    Task,
    TaskResult,
    TaskCancel,
    TaskCancelConfirm,
    ClientHeartbeat,
    ClientHeartbeatEcho,
    WorkerHeartbeat,
    WorkerHeartbeatEcho,
    ClientDisconnect,
    ClientShutdownResponse,
    DisconnectRequest,
    DisconnectResponse,
    SchedulerShutdown,
    ClientDropped,
)
