"""Task graphs on the scheduler: checking a ``GraphTask``, and propagating each node's end.

``GraphTable`` keeps, for every live node, the nodes it needs and the nodes that need it, and for
every graph its live nodes. It decides what a node's end makes happen (``node_done``): on success,
the dependents whose inputs are now all in become ready; on failure, every live node that needs
it, directly or not, fails with it. A node's result is kept in the object store, held by its
graph, while live nodes still need it; ``remove`` says which results the graph no longer needs,
and when the graph itself is over. The table never touches task records or the store: the
scheduler applies what it returns.
"""

from __future__ import annotations

import graphlib
from collections.abc import Container, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from scaler.protocol.messages import ArgumentKind, GraphTask
from scaler.utility.invariants import require


def graph_problem(graph: GraphTask, taken: Container[bytes]) -> str | None:
    """Why the scheduler cannot run ``graph``, or None if it can. ``taken``: task ids already in use."""
    ids = [node.task_id for node in graph.nodes]
    if len(set(ids)) != len(ids):
        return "the graph has two nodes with the same task id"
    known = set(ids)
    if any(task_id in taken for task_id in ids):
        return "a node reuses the task id of a live task"
    if not set(graph.targets) <= known or not graph.targets:
        return "the graph's targets must be some of its nodes"
    sorter: graphlib.TopologicalSorter[bytes] = graphlib.TopologicalSorter()
    for node in graph.nodes:
        if not set(node.dependencies) <= known:
            return f"node {node.task_id.hex()} depends on a task that is not in the graph"
        for argument in node.args:
            if (
                argument.kind is ArgumentKind.OBJECT
                and argument.data in known
                and argument.data not in node.dependencies
            ):
                return f"node {node.task_id.hex()} takes another node's result without depending on it"
        sorter.add(node.task_id, *node.dependencies)
    try:
        sorter.prepare()
    except graphlib.CycleError:
        return "the graph has a cycle"
    return None


@dataclass(slots=True)
class _Node:
    graph: bytes
    inputs: list[bytes]  # the nodes whose results it needs, each once
    missing_inputs: set[bytes]  # those of them that have not succeeded yet
    dependents: list[bytes] = field(default_factory=list)  # the nodes that need its result


class GraphTable(Mapping[bytes, AbstractSet[bytes]]):
    """Live graphs (graph id -> its live node ids) and the links between their nodes; see the module docstring."""

    def __init__(self) -> None:
        self._graphs: dict[bytes, dict[bytes, None]] = {}  # graph id -> live node ids, in submission order
        self._nodes: dict[bytes, _Node] = {}
        self._holds: dict[bytes, int] = {}  # node id -> live nodes that still need its result (> 0)

    def __getitem__(self, graph_id: bytes) -> AbstractSet[bytes]:
        return self._graphs[graph_id].keys()

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._graphs)

    def __len__(self) -> int:
        return len(self._graphs)

    def __contains__(self, graph_id: object) -> bool:
        return graph_id in self._graphs

    def add(self, graph_id: bytes, nodes: Sequence[tuple[bytes, Sequence[bytes]]]) -> list[bytes]:
        """Add a checked graph (``graph_problem`` found nothing): ``(node id, dependencies)`` per node.

        Returns the nodes that need nothing, in order: they are ready at once.
        """
        live = self._graphs[graph_id] = {}
        for node_id, dependencies in nodes:
            inputs = list(dict.fromkeys(dependencies))
            self._nodes[node_id] = _Node(graph_id, inputs, set(inputs))
            live[node_id] = None
        for node_id, _ in nodes:
            for input_id in self._nodes[node_id].inputs:
                self._nodes[input_id].dependents.append(node_id)
                self._holds[input_id] = self._holds.get(input_id, 0) + 1
        return [node_id for node_id, _ in nodes if not self._nodes[node_id].missing_inputs]

    def awaits_inputs(self, node_id: bytes) -> bool:
        """True if the node still misses the result of some node it needs."""
        node = self._nodes.get(node_id)
        return node is not None and bool(node.missing_inputs)

    def needs_result(self, node_id: bytes) -> bool:
        """True if a live node still needs this node's result (so it must be kept)."""
        return node_id in self._holds

    def node_done(self, node_id: bytes, ok: bool) -> tuple[list[bytes], list[bytes]]:
        """The node ended with a result (``ok``) or a failure: return ``(ready, failed)``.

        ``ready``: dependents whose inputs are now all in, in order. ``failed``: every live node that
        needs the failed one, directly or not. Nothing is removed: the scheduler ends each node, and
        ``remove`` follows.
        """
        node = self._nodes[node_id]
        if ok:
            ready: list[bytes] = []
            for dependent_id in node.dependents:
                dependent = self._nodes.get(dependent_id)
                if dependent is not None and node_id in dependent.missing_inputs:
                    dependent.missing_inputs.discard(node_id)
                    if not dependent.missing_inputs:
                        ready.append(dependent_id)
            return ready, []
        failed: list[bytes] = []
        seen: set[bytes] = set()
        pending = list(node.dependents)
        while pending:
            dependent_id = pending.pop()
            if dependent_id in seen or dependent_id not in self._nodes:
                continue
            seen.add(dependent_id)
            failed.append(dependent_id)
            pending += self._nodes[dependent_id].dependents
        return [], failed

    def remove(self, node_id: bytes) -> tuple[list[bytes], bool]:
        """A node ended: return the results no live node needs any more, and whether its graph is over.

        The scheduler releases those results (held by the graph), and everything the graph holds
        once it is over.
        """
        node = self._nodes.pop(node_id)
        live = self._graphs[node.graph]
        del live[node_id]
        released: list[bytes] = []
        for input_id in node.inputs:
            count = self._holds[input_id] - 1
            if count:
                self._holds[input_id] = count
            else:
                del self._holds[input_id]
                released.append(input_id)
        if live:
            return released, False
        del self._graphs[node.graph]
        return released, True

    def validate(self) -> None:
        """Raise ``InvariantError`` if the links are inconsistent."""
        require(sum(map(len, self._graphs.values())) == len(self._nodes), "a graph lists a node that ended")
        holds: dict[bytes, int] = {}
        for graph_id, live in self._graphs.items():
            require(live, "a finished graph was kept")
            for node_id in live:
                node = self._nodes[node_id]
                require(node.graph == graph_id, "a node listed under another graph")
                require(node.missing_inputs <= set(node.inputs), "a node misses a result it does not need")
                for input_id in node.inputs:
                    holds[input_id] = holds.get(input_id, 0) + 1
                    if input_id in self._nodes:
                        require(node_id in self._nodes[input_id].dependents, "a dependent missing from its input")
                    else:
                        require(input_id not in node.missing_inputs, "a node waits on an input that ended unfinished")
        require(holds == self._holds, "a graph's count of who needs a result is off")
