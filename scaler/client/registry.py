"""Clients rebuilt from a pickle: one connection per original client per process.

A ``Client`` pickles as its address, its token and its settings (``Client.__reduce__``). When a
task receives one, ``rebuild_client`` returns the original if it lives in this process, and
otherwise one client per (address, token), made on first use and shared by every task of the
process that receives the same original. Originals are held weakly; rebuilt clients for the
life of the process (a processor's tasks come and go, its connection stays).
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING

from scaler.client.serializer import Serializer
from scaler.utility import task_context

if TYPE_CHECKING:
    from scaler.client.client import Client

Key = tuple[str, bytes]  # (address, token)
Settings = tuple[bool, float, float, Serializer]  # profiling, timeout, heartbeat interval, serializer


class _Registry:
    """The clients of this process by (address, token); the lock is held while a rebuilt client connects."""

    def __init__(self) -> None:
        self.rebuilt: dict[Key, Client] = {}
        self.originals: weakref.WeakValueDictionary[Key, Client] = weakref.WeakValueDictionary()
        self.lock = threading.RLock()


_registry = _Registry()


def register_original(client: Client, address: str, token: bytes) -> None:
    """Note a client made in this process, so that its pickles unpickle here as itself."""
    with _registry.lock:
        _registry.originals[(address, token)] = client


def rebuild_client(
    address: str,
    token: bytes,
    settings: Settings,
    stream_output: bool,
    key_files: tuple[str, str] | None = None,
) -> Client:
    """Unpickle a ``Client``: the original if it lives in this process, else one shared connection.

    Keys travel as the paths of their files. Inside a task of the same scheduler, the worker's
    own keys are used instead: the original client's files are rarely on the worker's host.
    """
    from scaler.client.client import Client

    key = (address, token)
    with _registry.lock:
        client = _registry.originals.get(key) or _registry.rebuilt.get(key)
        if client is not None and client._reusable():
            return client
        profiling, timeout_seconds, heartbeat_interval_seconds, serializer = settings
        if address == task_context.scheduler_address():
            key_files = None  # Client() then picks the worker's keys
        key_file, scheduler_key_file = key_files or (None, None)
        client = Client(
            address,
            profiling,
            timeout_seconds,
            heartbeat_interval_seconds,
            serializer,
            stream_output,
            key_file=key_file,
            scheduler_key_file=scheduler_key_file,
        )
        client._token = token
        _registry.rebuilt[key] = client
        return client
