"""How a ``TaskResult`` becomes a future's value or exception, on the client.

``decode_result`` is the ``decode_result`` callable a ``ClientFutureManager`` is given:

- ``SUCCESS``: the payload, deserialized with the client's serializer (``DeserializeObjectError``
  if that fails);
- ``FAILED``: the task's own exception, pickled by the processor with its formatted traceback,
  which is attached as a ``RemoteTraceback`` ``__cause__``;
- any other status: the scaler error that names it (``TaskTimeoutError``, ``WorkerDiedError``...),
  whose message is the payload's text.
"""

from __future__ import annotations

import pickle
from typing import Any

from scaler.client.serializer import Serializer, deserialize_payload
from scaler.errors import (
    DeserializeObjectError,
    MissingObjects,
    NoWorkerError,
    ProcessorDiedError,
    RemoteTraceback,
    TaskRejectedError,
    TaskTimeoutError,
    WorkerDiedError,
)
from scaler.protocol.messages import TaskResult, TaskStatus

_TEXT_ERRORS: dict[TaskStatus, type[Exception]] = {
    TaskStatus.PROCESSOR_DIED: ProcessorDiedError,
    TaskStatus.WORKER_DIED: WorkerDiedError,
    TaskStatus.TIMEOUT: TaskTimeoutError,
    TaskStatus.REJECTED: TaskRejectedError,
    TaskStatus.NO_WORKER: NoWorkerError,
    TaskStatus.MISSING_OBJECTS: MissingObjects,
}


def decode_result(serializer: Serializer, result: TaskResult) -> tuple[bool, Any]:
    """``(True, value)`` or ``(False, exception)`` for a result whose payload is here."""
    status = result.status
    if status is TaskStatus.SUCCESS:
        try:
            return True, deserialize_payload(serializer, result.payload)
        except Exception as error:
            text = f"task {result.task_id.hex()}: cannot deserialize its result: {error}"
            return False, DeserializeObjectError(text)
    if status is TaskStatus.FAILED:
        try:
            remote_error, text = pickle.loads(result.payload)
        except Exception as error:
            unreadable = f"task {result.task_id.hex()} failed, and its error cannot be read: {error}"
            return False, DeserializeObjectError(unreadable)
        remote_error.__cause__ = RemoteTraceback(text)
        return False, remote_error
    return False, _TEXT_ERRORS[status](bytes(result.payload).decode(errors="replace"))
