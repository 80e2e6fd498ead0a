"""scaler: run Python functions on a cluster of worker processes, through futures.

::

    from scaler import Client

    with Client() as client:              # a private local cluster
        print(client.submit(pow, 2, 10).result())

Its client and cluster names are imported at their first use: a scheduler or worker process
(``python -m scaler.cli...``, which imports this package first) then does not pay for the client's
modules, nor a client for the cluster's until it starts one.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from scaler.about import __version__
from scaler.errors import (
    AuthenticationError,
    ClientForkedError,
    DeserializeObjectError,
    DisconnectedError,
    InsecureBindError,
    MissingObjects,
    NoWorkerError,
    ProcessorDiedError,
    ProtocolError,
    ProtocolVersionError,
    RemoteTraceback,
    ScalerError,
    SerializationError,
    ShutdownRefusedError,
    TaskNotFoundError,
    TaskRejectedError,
    TaskTimeoutError,
    WorkerDiedError,
)

if TYPE_CHECKING:
    from scaler.client.client import Client
    from scaler.client.future import ProfileResult, ScalerFuture
    from scaler.client.object_reference import ObjectReference
    from scaler.client.progress import progress
    from scaler.client.serializer import Serializer
    from scaler.client.task_report import TaskRecord
    from scaler.cluster.cluster import Cluster
    from scaler.cluster.combo import SchedulerClusterCombo

_LAZY = {
    "Client": "scaler.client.client",
    "ProfileResult": "scaler.client.future",
    "ScalerFuture": "scaler.client.future",
    "ObjectReference": "scaler.client.object_reference",
    "progress": "scaler.client.progress",
    "Serializer": "scaler.client.serializer",
    "TaskRecord": "scaler.client.task_report",
    "Cluster": "scaler.cluster.cluster",
    "SchedulerClusterCombo": "scaler.cluster.combo",
}


def __getattr__(name: str) -> Any:
    """Import one of the client and cluster names at its first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'scaler' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "__version__",
    "AuthenticationError",
    "Client",
    "ClientForkedError",
    "DeserializeObjectError",
    "Cluster",
    "DisconnectedError",
    "InsecureBindError",
    "MissingObjects",
    "NoWorkerError",
    "ObjectReference",
    "ProcessorDiedError",
    "ProfileResult",
    "ProtocolError",
    "ProtocolVersionError",
    "RemoteTraceback",
    "ScalerError",
    "ScalerFuture",
    "SchedulerClusterCombo",
    "SerializationError",
    "Serializer",
    "ShutdownRefusedError",
    "TaskNotFoundError",
    "TaskRecord",
    "TaskRejectedError",
    "TaskTimeoutError",
    "WorkerDiedError",
    "progress",
]
