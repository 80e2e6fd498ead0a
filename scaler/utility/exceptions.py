"""Scaler's error names, as the very classes scaler raises (``from scaler.utility.exceptions import ...``).

Each name here is an alias of a class in ``scaler.errors``, so ``except ProcessorDiedError``
catches what scaler raises. Scaler names with no meaning here are left out rather than faked:
the actor errors (scaler has no actors), ``CapnpDeserializationError`` (the wire format is
msgpack; a bad frame raises ``ProtocolError``), ``ObjectStorageException`` (objects live in the
scheduler, not an external store), and ``ClientCancelledException``, ``ClientShutdownException``
and ``ClientQuitException`` (a client that leaves ends its futures cancelled, and a lost
scheduler fails them with ``DisconnectedError``).
"""

from scaler.errors import (
    DeserializeObjectError,
    DisconnectedError,
    MissingObjects,
    NoWorkerError,
    ProcessorDiedError,
    TaskNotFoundError,
    WorkerDiedError,
)

__all__ = [
    "DeserializeObjectError",
    "DisconnectedError",
    "MissingObjects",
    "NoWorkerError",
    "ProcessorDiedError",
    "TaskNotFoundError",
    "WorkerDiedError",
]
