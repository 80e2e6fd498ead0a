"""Task graphs on the scheduler: checking a ``GraphTask`` and tracking each graph's live nodes.

A graph's node results are kept in the object store, held by the graph, until every node that
needs them is done; ``holds`` counts those remaining dependents per node.
"""

from __future__ import annotations

import graphlib
from collections import Counter
from collections.abc import Container
from dataclasses import dataclass, field

from scaler.protocol.messages import ArgumentKind, GraphTask


@dataclass(slots=True)
class GraphRecord:
    """One submitted graph: its unfinished nodes, and how many live nodes still need each result.

    Which nodes report to the client is on each ``TaskRecord`` (``is_target``), not repeated here.
    """

    nodes: set[bytes]
    holds: Counter[bytes] = field(default_factory=Counter)


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
