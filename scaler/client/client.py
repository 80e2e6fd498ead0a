"""``Client``: submit Python callables to a scaler cluster and get ``ScalerFuture``s back.

Data flow::

    user thread: submit(fn, *args) -> serialize args -> Task -> ClientAgent.send (queue + wake)
    agent thread: queue -> one frame -> scheduler ... TaskResult -> ClientFutureManager -> future

A function is pickled with the client's serializer and identified by the hash of those bytes;
its bytes travel only with the first task that names it. With no address, the client starts a
private ``SchedulerClusterCombo`` and shuts it down on ``disconnect()``.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import pickle
import struct
import threading
import types
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import cloudpickle

from scaler.client.agent import ClientAgent
from scaler.client.future import ScalerFuture
from scaler.client.future_manager import ClientFutureManager
from scaler.client.serializer import DefaultSerializer, Serializer
from scaler.errors import (
    DisconnectedError,
    ProcessorDiedError,
    RemoteTraceback,
    SerializationError,
    ShutdownRefusedError,
    TaskRejectedError,
    TaskTimeoutError,
    WorkerDiedError,
)
from scaler.io.sockets import make_identity, validate_address
from scaler.protocol.codec import MAX_PAYLOAD_BYTES
from scaler.protocol.messages import (
    ArgumentKind,
    ClientDisconnect,
    ClientShutdownResponse,
    DisconnectType,
    Task,
    TaskArgument,
    TaskResult,
    TaskStatus,
)

logger = logging.getLogger(__name__)

_FUNCTION_CACHE_SIZE = 256
_TEXT_ERRORS: dict[TaskStatus, type[Exception]] = {
    TaskStatus.PROCESSOR_DIED: ProcessorDiedError,
    TaskStatus.WORKER_DIED: WorkerDiedError,
    TaskStatus.TIMEOUT: TaskTimeoutError,
    TaskStatus.REJECTED: TaskRejectedError,
}


class Client:
    """A connection to a scaler scheduler.

    ``Client(address)`` connects to a running scheduler; ``Client()`` starts a private local
    cluster (one worker per CPU) and owns it. Use it as a context manager, or call
    ``disconnect()`` when done.
    """

    def __init__(
        self,
        address: str | None = None,
        profiling: bool = False,
        timeout_seconds: float = 60,
        heartbeat_interval_seconds: float = 2,
        serializer: Serializer | type[Serializer] | None = None,
    ) -> None:
        self._combo: Any = None
        if address is None:
            from scaler.cluster.combo import SchedulerClusterCombo

            self._combo = SchedulerClusterCombo(n_workers=os.cpu_count() or 1, logging_level="WARNING")
            address = self._combo.get_address()
        self.address = validate_address(address)
        self.profiling = profiling
        self.timeout_seconds = timeout_seconds
        if isinstance(serializer, type):
            serializer = serializer()
        self._serializer: Serializer = serializer or DefaultSerializer()
        identity = make_identity("client")
        self._task_prefix = os.urandom(8)
        self._task_counter = itertools.count()
        self._functions: OrderedDict[Any, tuple[bytes, bytes]] = OrderedDict()  # fn -> (id, bytes)
        self._sent_functions: set[bytes] = set()
        self._functions_lock = threading.Lock()
        self._shutdown_answer: ClientShutdownResponse | None = None
        self._shutdown_answered = threading.Event()
        self._disconnected = False
        self._manager = ClientFutureManager(self._send, self._decode_result, self._on_agent_thread)
        self._agent = ClientAgent(
            self.address,
            identity,
            self._manager,
            heartbeat_interval_seconds,
            timeout_seconds,
            self._on_shutdown_response,
        )
        self._agent.start()
        if not self._agent.connected.wait(timeout_seconds) or self._agent.error is not None:
            self._close(stop_combo=True)
            if self._agent.heard_anything and self._agent.error is not None:
                raise DisconnectedError(f"cannot use the scheduler at {self.address}: {self._agent.error}")
            raise DisconnectedError(
                f"no scaler scheduler answered at {self.address} within {timeout_seconds:g}s; "
                f"start one with `scaler_scheduler {self.address}`, or use Client() for a local cluster"
            )

    # -- context manager -----------------------------------------------------------------------

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.disconnect()

    # -- submitting ----------------------------------------------------------------------------

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> ScalerFuture:
        """Run ``fn(*args, **kwargs)`` on the cluster; return its future at once."""
        function_id, function = self._function_payload(fn)
        return self._submit(function_id, function, args, kwargs)

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any]) -> list[Any]:
        """Like the builtin ``map``, run on the cluster; block and return the results in order."""
        return self.starmap(fn, zip(*iterables))  # noqa: B905 - stops at the shortest, like the builtin

    def starmap(self, fn: Callable[..., Any], iterable: Iterable[Iterable[Any]]) -> list[Any]:
        """Run ``fn(*args)`` for each ``args`` in ``iterable``; block and return the results in order."""
        function_id, function = self._function_payload(fn)
        futures = [self._submit(function_id, function, tuple(args), {}) for args in iterable]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                if not future.done():
                    future.cancel(timeout=0)
            raise

    # -- leaving -------------------------------------------------------------------------------

    def disconnect(self) -> None:
        """Leave the scheduler; pending futures end cancelled. Calling it again does nothing."""
        if self._disconnected:
            return
        self._manager.cancel_all()
        if self._agent.error is None:
            self._send(ClientDisconnect(DisconnectType.DISCONNECT))
        self._close(stop_combo=True)

    def shutdown(self) -> None:
        """Stop the scheduler (and its cluster), then disconnect.

        Raises ``ShutdownRefusedError`` when the scheduler runs in protected mode. A client
        that started its own local cluster (``Client()``) always shuts it down.
        """
        if self._disconnected:
            return
        if self._combo is not None:
            self.disconnect()
            return
        self._ensure_connected()
        self._shutdown_answered.clear()
        self._send(ClientDisconnect(DisconnectType.SHUTDOWN))
        if not self._shutdown_answered.wait(self.timeout_seconds) or self._shutdown_answer is None:
            raise DisconnectedError(f"the scheduler did not answer the shutdown request within {self.timeout_seconds}s")
        if not self._shutdown_answer.accepted:
            raise ShutdownRefusedError(self._shutdown_answer.reason)
        self._manager.cancel_all()
        self._close(stop_combo=True)

    # -- internals -----------------------------------------------------------------------------

    def _close(self, stop_combo: bool) -> None:
        self._disconnected = True
        self._agent.stop()
        if stop_combo and self._combo is not None:
            self._combo.shutdown()
            self._combo = None

    def _ensure_connected(self) -> None:
        if self._disconnected:
            raise DisconnectedError("this client is disconnected; create a new Client to submit more tasks")
        if self._agent.error is not None:
            raise DisconnectedError(str(self._agent.error))

    def _send(self, message: Any) -> None:
        self._agent.send(message)

    def _on_agent_thread(self) -> bool:
        return threading.current_thread() is self._agent

    def _on_shutdown_response(self, response: ClientShutdownResponse) -> None:
        self._shutdown_answer = response
        self._shutdown_answered.set()

    def _function_payload(self, fn: Callable[..., Any]) -> tuple[bytes, bytes]:
        """Return (function id, pickled (fn, serializer)), from the cache when ``fn`` allows it."""
        if not callable(fn):
            raise TypeError(f"submit() needs a callable, got {type(fn).__name__}")
        cacheable = _cacheable(fn)
        if cacheable:
            with self._functions_lock:
                cached = self._functions.get(fn)
                if cached is not None:
                    self._functions.move_to_end(fn)
                    return cached
        try:
            blob = cloudpickle.dumps((fn, self._serializer), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as error:
            raise SerializationError(f"cannot pickle the function {fn!r}: {error}") from error
        entry = (hashlib.blake2b(blob, digest_size=16).digest(), blob)
        if cacheable:
            with self._functions_lock:
                self._functions[fn] = entry
                if len(self._functions) > _FUNCTION_CACHE_SIZE:
                    self._functions.popitem(last=False)
        return entry

    def _submit(
        self, function_id: bytes, function: bytes, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> ScalerFuture:
        self._ensure_connected()
        serialize = self._serializer.serialize
        try:
            arguments = [TaskArgument("", ArgumentKind.INLINE, serialize(value)) for value in args]
            arguments += [TaskArgument(name, ArgumentKind.INLINE, serialize(value)) for name, value in kwargs.items()]
        except Exception as error:
            raise SerializationError(f"cannot serialize an argument: {error}") from error
        size = sum(len(argument.data) for argument in arguments) + len(function)
        if size > MAX_PAYLOAD_BYTES:
            raise SerializationError(
                f"the task's function and arguments take {size} bytes, over the {MAX_PAYLOAD_BYTES} byte message "
                f"limit; split the data into smaller tasks"
            )
        task_id = self._task_prefix + struct.pack(">Q", next(self._task_counter))
        with self._functions_lock:
            first_time = function_id not in self._sent_functions
            self._sent_functions.add(function_id)
        future = self._manager.create(task_id)
        self._send(Task(task_id, function_id, function if first_time else b"", arguments, 0))
        return future

    def _decode_result(self, result: TaskResult) -> tuple[bool, Any]:
        status = result.status
        if status is TaskStatus.SUCCESS:
            try:
                return True, self._serializer.deserialize(result.payload)
            except Exception as error:
                return False, SerializationError(f"task {result.task_id.hex()}: cannot deserialize its result: {error}")
        if status is TaskStatus.FAILED:
            try:
                remote_error, text = pickle.loads(result.payload)
            except Exception as error:
                unreadable = f"task {result.task_id.hex()} failed, and its error cannot be read: {error}"
                return False, SerializationError(unreadable)
            remote_error.__cause__ = RemoteTraceback(text)
            return False, remote_error
        return False, _TEXT_ERRORS[status](result.payload.decode(errors="replace"))

    def statistics(self) -> dict[str, int]:
        """Counts for monitoring and tests."""
        return {"pending": self._manager.pending_count(), "functions_sent": len(self._sent_functions)}


def _cacheable(fn: Any) -> bool:
    """True for plain functions and module builtins, whose pickle is kept for the client's life.

    Like Dask and Ray, a function is pickled the first time the client sees it: globals it
    captures by value are frozen then. Callable objects, bound methods and partials carry state
    that users mutate, so they are pickled again at every submit (and still sent once per content).
    """
    if isinstance(fn, types.BuiltinFunctionType):
        # A module's builtin (pow, math.sqrt) is a name; a bound one ([].append) carries mutable state.
        return fn.__self__ is None or isinstance(fn.__self__, types.ModuleType)
    return isinstance(fn, types.FunctionType)
