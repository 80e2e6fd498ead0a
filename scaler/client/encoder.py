"""``TaskEncoder``: how a client's functions, arguments, objects and graph nodes become messages.

It owns what the client has already sent: functions (pickled once per client, cached by content
hash, their bytes attached to the first task naming them) and objects (``ClientObjects``). An
argument travels inline up to ``INLINE_ARGUMENT_BYTES`` serialized; a bigger one travels as an
automatic object, created once per content and pinned until its task or graph ends. Everything
it sends goes through the ``send`` callable, under the lock that decided it, so the scheduler
always sees an object's CREATE before the task that names it, and a function's bytes before
any task that names it only by id.
"""

from __future__ import annotations

import functools
import itertools
import pickle
import threading
import types
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import cloudpickle

from scaler.client import graph as graphs
from scaler.client.graph_runner import Call, DaskCall, GraphSerializer, encode_expression, run_graph_node
from scaler.client.object_reference import ObjectReference
from scaler.client.objects import ClientObjects
from scaler.client.serializer import Serializer
from scaler.errors import SerializationError
from scaler.protocol.codec import MAX_PAYLOAD_BYTES
from scaler.protocol.content_id import content_id
from scaler.protocol.messages import (
    ArgumentKind,
    GraphNode,
    GraphTask,
    Message,
    ObjectInstruction,
    ObjectInstructionType,
    Task,
    TaskArgument,
)
from scaler.protocol.segments import Segments

INLINE_ARGUMENT_BYTES = 64 * 1024  # a serialized argument over this travels as an object

_FUNCTION_CACHE_SIZE = 256
_FUNCTION_NAMES = 4096  # function id -> name entries kept (names of functions no longer cached may go)
_NAME_CHARS = 200

Payload = bytes | Segments  # what a serializer returns (``Segments`` from the default one, for big buffers)
Big = dict[bytes, Payload]  # automatic objects a task or graph needs: id -> payload


@dataclass
class EncodedGraph:
    """A planned graph as messages, not sent yet: its nodes, their task ids, and the data to upload."""

    nodes: list[GraphNode]
    task_ids: dict[Any, bytes]  # graph key -> task id
    big: Big  # automatic objects the nodes name
    runner: tuple[bytes, bytes]  # (function id, pickled runner) every node runs


class TaskEncoder:
    """Encodes one client's tasks; see the module docstring."""

    def __init__(self, serializer: Serializer, send: Callable[[Message], None], object_cache_bytes: int) -> None:
        self.serializer = serializer
        self._send = send
        self._functions: OrderedDict[Any, tuple[bytes, bytes]] = OrderedDict()  # fn -> (id, bytes)
        self._sent_functions: set[bytes] = set()
        self._names: OrderedDict[bytes, str] = OrderedDict()  # function id -> name, for the status feed
        self._functions_lock = threading.Lock()
        self._graph_runner: tuple[bytes, bytes] | None = None
        self._objects = ClientObjects(object_cache_bytes)
        self._objects_lock = threading.Lock()

    # -- functions -------------------------------------------------------------------------------

    def function(self, fn: Callable[..., Any]) -> tuple[bytes, bytes]:
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
        entry = _pickle_function(fn, self.serializer)
        name = function_name(fn)
        with self._functions_lock:
            if cacheable:
                self._functions[fn] = entry
                if len(self._functions) > _FUNCTION_CACHE_SIZE:
                    self._functions.popitem(last=False)
            self._names[entry[0]] = name
            self._names.move_to_end(entry[0])
            if len(self._names) > _FUNCTION_NAMES:
                self._names.popitem(last=False)
        return entry

    def graph_runner(self) -> tuple[bytes, bytes]:
        """The one function every graph node runs, with the serializer graph nodes travel with."""
        if self._graph_runner is None:
            self._graph_runner = _pickle_function(run_graph_node, GraphSerializer(self.serializer))
        return self._graph_runner

    def send_with_function(self, message: Task | GraphTask, function_id: bytes, function: bytes) -> None:
        """Send a task or graph, attaching the function's bytes if this client never sent them.

        Under the lock, so a second thread's task naming the same function cannot overtake the
        first one, which carries its bytes.
        """
        with self._functions_lock:
            if function_id not in self._sent_functions:
                self._sent_functions.add(function_id)
                if isinstance(message, Task):
                    message.function = function
                else:
                    message.nodes[0].function = function
            if isinstance(message, Task) and not message.function_name:
                message.function_name = self._names.get(function_id, "")
            self._send(message)

    # -- arguments -------------------------------------------------------------------------------

    def serialize(self, value: Any, what: str) -> Payload:
        """The client serializer's bytes for ``value``; ``SerializationError`` naming ``what`` if it fails."""
        try:
            return self.serializer.serialize(value)
        except Exception as error:
            raise SerializationError(f"cannot serialize {what}: {error}") from error

    def arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any], big: Big) -> tuple[list[TaskArgument], int]:
        """Encode a task's arguments; return them and how many bytes travel inline."""
        serialize = self.serializer.serialize
        encoded: list[TaskArgument] = []
        inline = 0
        try:
            for name, value in itertools.chain(zip(itertools.repeat(""), args), kwargs.items()):
                if type(value) is ObjectReference:
                    encoded.append(TaskArgument(name, ArgumentKind.OBJECT, value.object_id))
                    continue
                payload = serialize(value)
                if type(payload) is bytes and len(payload) <= INLINE_ARGUMENT_BYTES:
                    encoded.append(TaskArgument(name, ArgumentKind.INLINE, payload))
                    inline += len(payload)
                else:
                    encoded.append(self.payload_argument(name, payload, big))
        except SerializationError:
            raise
        except Exception as error:
            raise SerializationError(f"cannot serialize an argument: {error}") from error
        return encoded, inline

    def argument(self, name: str, value: Any, big: Big) -> TaskArgument:
        """Encode one argument: an object reference, inline bytes, or a new automatic object in ``big``."""
        if type(value) is ObjectReference:
            return TaskArgument(name, ArgumentKind.OBJECT, value.object_id)
        return self.payload_argument(name, self.serialize(value, "an argument"), big)

    @staticmethod
    def payload_argument(name: str, payload: Payload, big: Big) -> TaskArgument:
        """Inline bytes if small, else an automatic object added to ``big`` (a ``Segments`` is never small)."""
        if type(payload) is bytes and len(payload) <= INLINE_ARGUMENT_BYTES:
            return TaskArgument(name, ArgumentKind.INLINE, payload)
        check_object_size(payload)
        object_id = content_id(payload)
        big[object_id] = payload
        return TaskArgument(name, ArgumentKind.OBJECT, object_id)

    def graph(self, plan: graphs.GraphPlan, new_task_id: Callable[[], bytes]) -> EncodedGraph:
        """Encode every node of a plan; raises (``SerializationError``) before anything is sent."""
        task_ids = {node.key: new_task_id() for node in plan.nodes}
        big: Big = {}
        memo: dict[Hashable, bytes] = {}
        nodes = [self.graph_node(node, task_ids, big, memo) for node in plan.nodes]
        check_message_size(sum(len(a.data) for node in nodes for a in node.args if a.kind is ArgumentKind.INLINE))
        return EncodedGraph(nodes, task_ids, big, self.graph_runner())

    def graph_node(
        self, node: graphs.NodePlan, task_ids: dict[Any, bytes], big: Big, memo: dict[Hashable, bytes] | None = None
    ) -> GraphNode:
        """One planned graph node as a ``GraphNode``: its expression, then its dependencies and data."""
        try:
            expression = encode_expression(node.expression, memo)
        except Exception as error:
            raise SerializationError(f"cannot pickle the task of graph key {node.key!r}: {error}") from error
        arguments = [self.payload_argument("", expression, big)]
        for argument in node.arguments:
            if isinstance(argument, graphs.Dependency):
                arguments.append(TaskArgument("", ArgumentKind.OBJECT, task_ids[argument.key]))
            else:
                arguments.append(self.argument("", argument.value, big))
        dependencies = [task_ids[key] for key in node.dependencies]
        name = _node_function_name(node.expression)
        return GraphNode(task_ids[node.key], self.graph_runner()[0], b"", arguments, dependencies, name)

    # -- objects ---------------------------------------------------------------------------------

    def send_object(self, obj: Any, name: str | None) -> ObjectReference:
        """Create ``obj`` on the scheduler unless its content is there already; return its reference."""
        payload = self.serialize(obj, "the object")
        check_object_size(payload)
        object_id = content_id(payload)
        with self._objects_lock:
            if self._objects.add_explicit(object_id, len(payload)):
                self._send(ObjectInstruction(ObjectInstructionType.CREATE, [object_id], [_wire(payload)]))
        return ObjectReference(object_id, type(obj).__name__ if name is None else name, len(payload))

    def pin_automatic(self, big: Big) -> Callable[[], None] | None:
        """Upload the automatic objects a task or graph needs; return what unpins them when it ends."""
        if not big:
            return None
        with self._objects_lock:
            for object_id, payload in big.items():
                create, evicted = self._objects.use_automatic(object_id, len(payload))
                if create:
                    self._send(ObjectInstruction(ObjectInstructionType.CREATE, [object_id], [_wire(payload)]))
                self._delete(evicted)
        object_ids = list(big)
        return lambda: self._release_automatic(object_ids)

    def clear(self) -> None:
        """Forget every object, and tell the scheduler to drop them all."""
        with self._objects_lock:
            self._objects.clear()
            self._send(ObjectInstruction(ObjectInstructionType.CLEAR, [], []))

    def statistics(self) -> dict[str, int]:
        """Counts for monitoring and tests."""
        with self._objects_lock:
            objects = self._objects.statistics()
        return {"functions_sent": len(self._sent_functions), **objects}

    def _release_automatic(self, object_ids: list[bytes]) -> None:
        with self._objects_lock:
            self._delete(self._objects.release_automatic(object_ids))

    def _delete(self, object_ids: list[bytes]) -> None:
        if object_ids:
            self._send(ObjectInstruction(ObjectInstructionType.DELETE, object_ids, []))


def check_object_size(payload: Payload) -> None:
    """Refuse an object that could not fit in one message."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise SerializationError(
            f"an object of {len(payload)} bytes is over the {MAX_PAYLOAD_BYTES} byte message limit; "
            f"split the data into smaller pieces"
        )


def _wire(payload: Payload) -> bytes:
    """A payload as a message field: a ``Segments`` travels out of band (``protocol/buffers.py``), never via msgpack."""
    return payload  # type: ignore[return-value]


def check_message_size(size: int) -> None:
    """Refuse a task or graph whose inline bytes could not fit in one message."""
    if size > MAX_PAYLOAD_BYTES:
        raise SerializationError(
            f"the task's function and inline arguments take {size} bytes, over the {MAX_PAYLOAD_BYTES} byte "
            f"message limit; split the data into smaller tasks"
        )


def function_name(fn: Any) -> str:
    """A readable name for a task's function (``module.qualname``), for the status feed and logs."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    qualname = getattr(fn, "__qualname__", None)
    module = getattr(fn, "__module__", None)
    if not isinstance(qualname, str):  # a callable object: name its class
        qualname, module = type(fn).__qualname__, type(fn).__module__
    name = f"{module}.{qualname}" if isinstance(module, str) and module else qualname
    return name[:_NAME_CHARS]


def _node_function_name(expression: Any) -> str:
    """The function a graph node calls: that of its outermost call, if any (else it only passes data on)."""
    if isinstance(expression, Call):
        return function_name(expression.func)
    if isinstance(expression, DaskCall):
        func = getattr(expression.node, "func", None)
        return function_name(func) if func is not None else type(expression.node).__name__
    return ""


def _pickle_function(fn: Any, serializer: Serializer) -> tuple[bytes, bytes]:
    try:
        blob = cloudpickle.dumps((fn, serializer), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as error:
        raise SerializationError(f"cannot pickle the function {fn!r}: {error}") from error
    return content_id(blob), blob


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
