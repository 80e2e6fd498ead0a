"""scaler: run Python functions on a cluster of worker processes, through futures.

::

    from scaler import Client

    with Client() as client:              # a private local cluster
        print(client.submit(pow, 2, 10).result())
"""

from scaler.about import __version__
from scaler.client.client import Client
from scaler.client.future import ProfileResult, ScalerFuture
from scaler.client.object_reference import ObjectReference
from scaler.client.progress import progress
from scaler.client.serializer import Serializer
from scaler.client.task_report import TaskRecord
from scaler.cluster.cluster import Cluster
from scaler.cluster.combo import SchedulerClusterCombo
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
