"""Every error type that scaler raises to its users, in one place so they can be caught by name."""

from __future__ import annotations


class ScalerError(Exception):
    """Base class of every error raised by scaler itself (not by user tasks)."""


class ProtocolError(ScalerError):
    """Bytes received from a peer could not be decoded into a valid message."""


class ProtocolVersionError(ProtocolError):
    """A peer speaks another protocol version."""

    def __init__(self, ours: int, theirs: object) -> None:
        super().__init__(
            f"peer speaks scaler protocol version {theirs!r} but this process speaks version {ours}; "
            f"install the same scaler version on the clients, the scheduler and the workers"
        )
        self.ours = ours
        self.theirs = theirs


class DisconnectedError(ScalerError, ConnectionError):
    """The client lost its scheduler, or was disconnected, so the task's outcome cannot be known."""


class AuthenticationError(DisconnectedError):
    """The scheduler refused this process's CURVE keys, or the keys do not fit the scheduler's.

    The message says which key file to check. ``scaler_keygen DIR`` makes a matching set.
    """


class ClientForkedError(DisconnectedError):
    """A ``Client`` was used in a process forked from the one that created it.

    The child inherits the object but not its agent thread or connection: create a new
    ``Client`` in the child instead.
    """


class InsecureBindError(ScalerError, ValueError):
    """A scheduler was asked to bind to a non-loopback address without keys and without ``insecure``."""


class WorkerDiedError(ScalerError):
    """The task's worker (or processor) died more times than ``max_task_retries`` while running it."""


class ProcessorDiedError(WorkerDiedError):
    """The processor running the task died (a crash, ``os._exit``, a segfault or an out-of-memory kill).

    The scheduler retries such a task up to ``max_task_retries`` times before raising this.
    """


class TaskTimeoutError(ScalerError, TimeoutError):
    """The task ran longer than its timeout and was stopped."""


class TaskRejectedError(ScalerError):
    """The scheduler refused the task; the message says why."""


class NoWorkerError(TaskRejectedError):
    """No connected worker offers the capabilities the task needs, and none came within the grace period.

    Start workers that offer them (``scaler_cluster --per-worker-capabilities ...``), or lengthen
    ``--unschedulable-grace-seconds``.
    """


class MissingObjects(TaskRejectedError):
    """The task names an object the scheduler does not hold: never sent, or already freed (``clear()``)."""


class TaskNotFoundError(ScalerError, LookupError):
    """The scheduler no longer holds the task's kept result (``client.clear()`` ran before it was read)."""


class SerializationError(ScalerError):
    """A function, argument, result or exception could not be (de)serialized."""


class DeserializeObjectError(SerializationError):
    """A task's result (or its exception) arrived but could not be deserialized on the client."""


class ShutdownRefusedError(ScalerError, ValueError):
    """The scheduler refused ``Client.shutdown()`` because it runs in protected mode.

    Also a ``ValueError``, the type Scaler raises there, so ``except ValueError`` keeps working.
    """


class RemoteTraceback(Exception):
    """Carries the traceback text of an exception raised on a worker; attached as ``__cause__``."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return "\n\n" + self.text
