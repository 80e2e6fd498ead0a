"""The task functions every framework runs, and the graph they share.

They live in an importable module, so every framework's workers can load them by reference:
forked and spawned pools, scaler's processors, dask's and Ray's workers.
"""

from __future__ import annotations

import os
import pathlib
import time
from typing import Any

MIB = 1024 * 1024


def noop(x: int) -> int:
    """The task whose cost is pure framework overhead."""
    return x


def worker_pid(seconds: float) -> int:
    """Hold a worker briefly, then say which process ran the task."""
    time.sleep(seconds)
    return os.getpid()


def block(stop_path: str, started_dir: str, max_seconds: float) -> int:
    """Mark that a worker started this task, then sleep until ``stop_path`` exists (at most ``max_seconds``).

    A framework whose cancel is asynchronous may still start a cancelled task after the benchmark
    removed its directory: such a task returns at once.
    """
    try:
        pathlib.Path(started_dir, f"{os.getpid()}-{time.monotonic_ns()}").touch()
    except FileNotFoundError:
        return os.getpid()
    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline and not os.path.exists(stop_path) and os.path.isdir(started_dir):
        time.sleep(0.005)
    return os.getpid()


def payload_size(data: bytes) -> int:
    """Take a (big) argument; return only its size."""
    return len(data)


def make_payload(size: int) -> bytes:
    """Return a (big) result of ``size`` bytes."""
    return bytes(size)


def distinct_payloads(count: int, size: int) -> list[bytes]:
    """``count`` payloads of ``size`` bytes that differ in their first bytes.

    Distinct contents, so that no framework can send one object once and refer to it after.
    """
    base = bytes(size)
    return [i.to_bytes(8, "little") + base[8:] for i in range(count)]


def identity(x: int) -> int:
    """A leaf of the tree graph."""
    return x


def add(x: int, y: int) -> int:
    """An inner node of the tree graph."""
    return x + y


def tree_graph(depth: int) -> tuple[dict[str, Any], str, int]:
    """A binary-tree sum of ``2**depth - 1`` nodes, as a dask-style dict: ``(graph, root key, expected value)``.

    Leaves are ``(identity, i)``, inner nodes ``(add, left, right)``; keys are in topological order.
    """
    graph: dict[str, Any] = {}
    level = [f"leaf-{i}" for i in range(2 ** (depth - 1))]
    for i, key in enumerate(level):
        graph[key] = (identity, i)
    height = 0
    while len(level) > 1:
        height += 1
        parents = []
        for i in range(0, len(level), 2):
            key = f"sum-{height}-{i // 2}"
            graph[key] = (add, level[i], level[i + 1])
            parents.append(key)
        level = parents
    leaves = 2 ** (depth - 1)
    return graph, level[0], leaves * (leaves - 1) // 2
