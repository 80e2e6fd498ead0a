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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cloudpickle

from scaler.client.serializer import Serializer, deserialize_payload

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


def encode_expression(expression: Any) -> bytes:
    """The bytes of a node's expression argument, for ``GraphSerializer.deserialize``."""
    payload: bytes = cloudpickle.dumps(expression, protocol=pickle.HIGHEST_PROTOCOL)
    return EXPRESSION_MAGIC + payload


class GraphSerializer(Serializer):
    """The serializer graph nodes travel with: the client's own, plus node expressions."""

    takes_buffers = True  # it hands the client's serializer bytes unless that one takes buffers too

    def __init__(self, inner: Serializer) -> None:
        self.inner = inner

    def serialize(self, obj: Any) -> bytes:
        """Results and data go through the client's serializer."""
        return self.inner.serialize(obj)

    def deserialize(self, payload: bytes) -> Any:
        """Expressions are recognized by their prefix; everything else is the client's serializer's."""
        if bytes(payload[: len(EXPRESSION_MAGIC)]) == EXPRESSION_MAGIC:
            return pickle.loads(memoryview(payload)[len(EXPRESSION_MAGIC) :])
        return deserialize_payload(self.inner, payload)
