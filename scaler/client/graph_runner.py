"""What every graph node runs on a worker: ``run_graph_node`` evaluates the node's expression.

A planned node (``graph.py``) is an expression built of ``Arg`` (the node's ``i``-th argument
value), ``Call``, ``ListOf``, ``TupleOf``, ``DictOf`` and ``DaskCall``, plus small scalars
carried as they are. The expression travels as ``EXPRESSION_MAGIC`` + cloudpickle
(``encode_expression``), decoded on the worker by ``GraphSerializer``; every other argument and
every result goes through the client's own serializer, so a custom serializer sees all of a
graph's data and none of its structure. The encoder sends ``run_graph_node`` once per client,
pickled with a ``GraphSerializer``.
"""

from __future__ import annotations

import pickle
import types
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import cloudpickle

from scaler.client.serializer import Serializer, deserialize_payload
from scaler.protocol.segments import Segments

EXPRESSION_MAGIC = b"\xffscaler-graph-expression\x00"


class Arg:
    """The value of the node's ``index``-th argument."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self) -> tuple[Any, ...]:
        return Arg, (self.index,)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Arg) and other.index == self.index

    def __hash__(self) -> int:
        return hash((Arg, self.index))

    def __repr__(self) -> str:
        return f"Arg({self.index})"


@dataclass(frozen=True)
class Call:
    """``func(*args)``, each arg an expression."""

    func: Any
    args: tuple[Any, ...]


@dataclass(frozen=True)
class ListOf:
    """A list of expressions."""

    items: tuple[Any, ...]


@dataclass(frozen=True)
class TupleOf:
    """A tuple of expressions."""

    items: tuple[Any, ...]


@dataclass(frozen=True)
class DictOf:
    """A dict whose values are expressions."""

    keys: tuple[Any, ...]
    values: tuple[Any, ...]


@dataclass(frozen=True)
class DaskCall:
    """A dask task-spec node, called with ``{dependency key: value}`` like dask's own schedulers do."""

    node: Any
    keys: tuple[Any, ...]  # its dependencies, the node's first ``len(keys)`` arguments


def evaluate(expression: Any, values: Sequence[Any]) -> Any:
    """Compute an expression from its node's argument values."""
    kind = type(expression)
    if kind is Arg:
        return values[expression.index]
    if kind is Call:
        return expression.func(*[evaluate(arg, values) for arg in expression.args])
    if kind is ListOf:
        return [evaluate(item, values) for item in expression.items]
    if kind is TupleOf:
        return tuple(evaluate(item, values) for item in expression.items)
    if kind is DictOf:
        return dict(zip(expression.keys, [evaluate(value, values) for value in expression.values]))  # noqa: B905
    if kind is DaskCall:
        return expression.node(dict(zip(expression.keys, values)))  # noqa: B905 - values may carry literals too
    return expression  # a small scalar carried in the expression itself


def run_graph_node(expression: Any, *values: Any) -> Any:
    """The one function every graph node runs on a worker."""
    return evaluate(expression, values)


def encode_expression(expression: Any, memo: dict[Hashable, bytes] | None = None) -> bytes:
    """The bytes of a node's expression argument, for ``GraphSerializer.deserialize``.

    With ``memo``, expressions that would pickle the same are pickled once: in a big graph most
    nodes share a handful of shapes (``add(Arg(0), Arg(1))``), and cloudpickle is most of the
    client's cost per node otherwise.
    """
    key = _memo_key(expression) if memo is not None else None
    if key is not None and memo is not None:
        cached = memo.get(key)
        if cached is not None:
            return cached
    payload: bytes = EXPRESSION_MAGIC + cloudpickle.dumps(expression, protocol=pickle.HIGHEST_PROTOCOL)
    if key is not None and memo is not None:
        memo[key] = payload
    return payload


# Leaves a memo key can carry exactly: equal keys must mean equal pickles, and 1 == 1.0 == True
# or 0.0 == -0.0 would not, so each leaf is tagged with its type (and floats go by repr).
_EXACT_LEAVES = frozenset({int, str, bytes, bool, type(None)})


def _memo_key(expression: Any) -> Hashable | None:
    """A key equal only for expressions that pickle to the same bytes; None when unsure."""
    kind = type(expression)
    if kind is Arg:
        return (Arg, expression.index)
    if kind in _EXACT_LEAVES:
        return (kind, expression)
    if kind is float:
        return (float, repr(expression))
    if kind is Call:
        if not isinstance(expression.func, types.FunctionType | types.BuiltinFunctionType):
            return None
        parts = _memo_keys(expression.args)
        return None if parts is None else (Call, expression.func, parts)
    if kind is ListOf or kind is TupleOf:
        parts = _memo_keys(expression.items)
        return None if parts is None else (kind, parts)
    if kind is DictOf:
        keys, values = _memo_keys(expression.keys), _memo_keys(expression.values)
        return None if keys is None or values is None else (DictOf, keys, values)
    return None  # a dask node, or anything else: pickled every time


def _memo_keys(expressions: tuple[Any, ...]) -> tuple[Hashable, ...] | None:
    keys = tuple(_memo_key(item) for item in expressions)
    return None if None in keys else keys


class GraphSerializer(Serializer):
    """The serializer graph nodes travel with: the client's own, plus node expressions."""

    takes_buffers = True  # it hands the client's serializer bytes unless that one takes buffers too
    # Decoded expressions kept per processor, by their bytes: at most this many.
    CACHE_SIZE = 1024

    def __init__(self, inner: Serializer) -> None:
        self.inner = inner
        self._expressions: dict[bytes, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"inner": self.inner}  # the cache is the receiver's own

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.inner = state["inner"]
        self._expressions = {}

    def serialize(self, obj: Any) -> bytes | Segments:
        """Results and data go through the client's serializer."""
        return self.inner.serialize(obj)

    def deserialize(self, payload: bytes | memoryview | Segments) -> Any:
        """Expressions are recognized by their prefix; everything else is the client's serializer's."""
        if isinstance(payload, Segments) or bytes(payload[: len(EXPRESSION_MAGIC)]) != EXPRESSION_MAGIC:
            return deserialize_payload(self.inner, payload)
        key = bytes(payload)
        expression = self._expressions.get(key)
        if expression is None:
            expression = pickle.loads(memoryview(key)[len(EXPRESSION_MAGIC) :])
            # Shared between nodes only when nothing in it can carry state from one node to the next.
            if _memo_key(expression) is not None:
                if len(self._expressions) >= self.CACHE_SIZE:
                    self._expressions.clear()
                self._expressions[key] = expression
        return expression
