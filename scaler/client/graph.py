"""Task graphs for ``Client.get``: the plan, the first step of their one road; pure, no I/O.

A graph's road through the client::

    Client.get(graph, keys)
      1. plan (here):    plan_request -> GraphRequest: dask or not, keys checked, the graph
                         culled to what ``keys`` need (missing/duplicate keys and cycles raise),
                         one NodePlan per needed key in dependency order, each an expression
                         whose ``Arg(i)`` placeholders stand for the node's arguments
                         (``Dependency`` = another key's value, ``Literal`` = data)
      2. encode:         TaskEncoder.graph(plan) -> EncodedGraph: one GraphNode per NodePlan,
                         all run by ``run_graph_node`` (``graph_runner.py``), big data as objects
      3. send:           Client: futures for the targets, one GraphTask
      4. pack:           GraphRequest.pack(values): ``{key: value}``, or shaped like dask's keys
    worker: run_graph_node(expression, *argument values) = evaluate(expression, values)

Two graph formats are read. Dask's legacy format: a value is data, a key of the graph (an
alias), or a task tuple ``(callable, *args)`` whose args may be keys, nested task tuples, or
lists, tuples and dicts of those. Dask's task-spec format (``dask._task_spec`` ``Task``,
``Alias``, ``DataNode``...), which dask hands to custom schedulers: a ``Task`` travels as it is
and is called on the worker with its dependencies' values, as dask's own schedulers call it.

What a node's expression is made of, and how a worker runs it, is ``graph_runner.py``.
"""

from __future__ import annotations

import graphlib
import sys
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scaler.client.graph_runner import Arg, Call, DaskCall, DictOf, ListOf, TupleOf
from scaler.client.object_reference import ObjectReference

_SMALL_SCALARS = (type(None), bool, int, float, complex)
_SMALL_TEXT = 256  # str/bytes up to this length stay inside the expression


@dataclass(frozen=True)
class Dependency:
    """A node argument that is another node's result."""

    key: Any


@dataclass(frozen=True)
class Literal:
    """A node argument that is data sent with the graph (or an ``ObjectReference`` to stored data)."""

    value: Any


@dataclass
class NodePlan:
    """One node to send: its expression and the arguments its ``Arg`` placeholders name."""

    key: Any
    expression: Any
    arguments: list[Dependency | Literal] = field(default_factory=list)

    @property
    def dependencies(self) -> list[Any]:
        """The keys this node needs, in argument order, each once."""
        return [argument.key for argument in self.arguments if isinstance(argument, Dependency)]


@dataclass
class GraphPlan:
    """The culled graph: nodes in dependency order, and the keys asked for."""

    nodes: list[NodePlan]
    targets: list[Any]


class _Pure:
    """Marks a converted sub-expression that holds no key, task or object reference."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


@dataclass
class GraphRequest:
    """What ``Client.get`` was asked: the plan, and how to shape the targets' values."""

    plan: GraphPlan
    dask_keys: Any = None  # dask's nested keys, when dask calls the client as its scheduler

    @property
    def from_dask(self) -> bool:
        """Whether dask asked (it always blocks, and wants values shaped like its keys)."""
        return self.dask_keys is not None

    def pack(self, values: Mapping[Any, Any]) -> Any:
        """The answer to give: ``{key: value}`` in the asked order, or dask's shape."""
        if self.dask_keys is not None:
            return pack_results(self.dask_keys, values)
        return dict(values)


def plan_request(graph: Any, keys: Any) -> GraphRequest:
    """Plan what ``Client.get(graph, keys)`` asks, dask's calling convention included.

    Raises ``TypeError`` for keys that are not a list or a graph that is not a mapping,
    ``KeyError`` and ``graphlib.CycleError`` as ``plan_graph`` does; nothing is sent before.
    """
    from_dask = dask_graph(graph, keys)
    if from_dask is not None:
        return GraphRequest(plan_graph(from_dask, flatten_keys(keys)), dask_keys=keys)
    if isinstance(keys, (str, bytes)) or not isinstance(keys, Sequence):
        raise TypeError(f"keys must be a list of graph keys, got {keys!r}")
    if not isinstance(graph, Mapping):
        raise TypeError(f"graph must be a dict of key -> value or task, got {type(graph).__name__}")
    return GraphRequest(plan_graph(graph, list(keys)))


def plan_graph(graph: Mapping[Any, Any], keys: Sequence[Any]) -> GraphPlan:
    """Cull ``graph`` to what ``keys`` need and plan one node per needed key.

    Raises ``KeyError`` for a key asked twice or missing from the graph (also a dask node's
    missing dependency), and ``graphlib.CycleError`` for a cycle; nothing is sent before that.
    """
    targets = list(keys)
    seen: set[Any] = set()
    for key in targets:
        if not _is_hashable(key):
            raise KeyError(f"graph keys must be hashable, got {key!r}")
        if key in seen:
            raise KeyError(f"key {key!r} is asked for twice")
        seen.add(key)
        if key not in graph:
            raise KeyError(f"key {key!r} is not in the graph")
    dask_node = _dask_node_type()
    plans: dict[Any, NodePlan] = {}
    stack = list(targets)
    while stack:
        key = stack.pop()
        if key in plans:
            continue
        plan = _plan_node(graph, key, graph[key], dask_node)
        plans[key] = plan
        for dependency in plan.dependencies:
            if dependency not in graph:
                raise KeyError(f"key {key!r} depends on {dependency!r}, which is not in the graph")
            if dependency not in plans:
                stack.append(dependency)
    order = graphlib.TopologicalSorter({key: plan.dependencies for key, plan in plans.items()}).static_order()
    return GraphPlan([plans[key] for key in order], targets)


def _plan_node(graph: Mapping[Any, Any], key: Any, value: Any, dask_node: type | None) -> NodePlan:
    plan = NodePlan(key, None)
    if dask_node is not None and isinstance(value, dask_node):
        plan.expression = _plan_dask_node(plan, value)
        return plan
    dependency_index: dict[Any, int] = {}

    def convert(expression: Any) -> Any:
        if _is_hashable(expression) and not isinstance(expression, ObjectReference) and expression in graph:
            index = dependency_index.get(expression)
            if index is None:
                index = dependency_index[expression] = len(plan.arguments)
                plan.arguments.append(Dependency(expression))
            return Arg(index)
        kind = type(expression)
        if kind is ObjectReference:
            return _literal(plan, expression)
        if kind is tuple and expression and callable(expression[0]):
            return Call(expression[0], tuple(_materialize(plan, convert(arg)) for arg in expression[1:]))
        if kind is list or kind is tuple:
            items = [convert(item) for item in expression]
            if all(isinstance(item, _Pure) for item in items):
                return _Pure(expression)
            built = tuple(_materialize(plan, item) for item in items)
            return ListOf(built) if kind is list else TupleOf(built)
        if kind is dict:
            values = [convert(item) for item in expression.values()]
            if all(isinstance(item, _Pure) for item in values):
                return _Pure(expression)
            return DictOf(tuple(expression), tuple(_materialize(plan, item) for item in values))
        return _Pure(expression)

    plan.expression = _materialize(plan, convert(value))
    return plan


def _plan_dask_node(plan: NodePlan, node: Any) -> Any:
    kind = type(node).__name__
    if kind == "DataNode":
        return _materialize(plan, _Pure(node.value))
    dependencies = list(node.dependencies)
    plan.arguments.extend(Dependency(dependency) for dependency in dependencies)
    if kind == "Alias":
        return Arg(0)
    return DaskCall(node, tuple(dependencies))


def _materialize(plan: NodePlan, converted: Any) -> Any:
    """Turn a pure sub-expression into a small inline scalar or a literal argument."""
    if not isinstance(converted, _Pure):
        return converted
    value = converted.value
    if type(value) in _SMALL_SCALARS or (type(value) in (str, bytes) and len(value) <= _SMALL_TEXT):
        return value
    return _literal(plan, value)


def _literal(plan: NodePlan, value: Any) -> Arg:
    plan.arguments.append(Literal(value))
    return Arg(len(plan.arguments) - 1)


def _is_hashable(value: Any) -> bool:
    if not isinstance(value, Hashable):
        return False
    try:
        hash(value)
    except TypeError:  # a tuple holding a list
        return False
    return True


def _dask_node_type() -> type | None:
    """dask's task-spec node class, if dask is loaded (scaler never imports dask on its own)."""
    if "dask" not in sys.modules:
        return None
    try:
        from dask._task_spec import GraphNode
    except ImportError:  # an old dask: legacy graphs only
        return None
    node_type: type = GraphNode
    return node_type


# -- dask's custom scheduler convention ---------------------------------------------------------------


def dask_graph(graph: Any, keys: Any = None) -> Mapping[Any, Any] | None:
    """The graph to run if this is dask calling its scheduler (results shaped like ``keys``), else None.

    dask passes a collection or expression (whose ``__dask_graph__()`` is the graph); older
    code paths pass a ``HighLevelGraph`` or a dict with nested lists of keys.
    """
    if not isinstance(graph, Mapping):
        if not hasattr(graph, "__dask_graph__"):
            return None
        inner: Mapping[Any, Any] = graph.__dask_graph__()
        return inner
    from_dask = type(graph).__module__.split(".")[0] == "dask"
    if from_dask or (isinstance(keys, list) and any(isinstance(key, list) for key in keys)):
        return graph
    return None


def flatten_keys(keys: Any) -> list[Any]:
    """The keys of dask's nested ``keys`` argument, each once, in first-seen order."""
    flat: dict[Any, None] = {}

    def visit(item: Any) -> None:
        if isinstance(item, list):
            for inner in item:
                visit(inner)
        else:
            flat.setdefault(item, None)

    visit(keys)
    return list(flat)


def pack_results(keys: Any, values: Mapping[Any, Any]) -> Any:
    """Shape results like dask's schedulers do: a tuple for each list in ``keys``."""
    if isinstance(keys, list):
        return tuple(pack_results(item, values) for item in keys)
    return values[keys]
