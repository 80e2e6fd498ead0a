"""Graph benchmark: a binary-tree sum of tiny dependent nodes, scaler beside dask.distributed.

Run it from the repository root::

    python benchmarks/bench_graph.py                 # 1,023 nodes (depth 10), 2 workers
    python benchmarks/bench_graph.py --depth 12 --workers 4
    python benchmarks/bench_graph.py --quick         # a small tree, for a smoke test

The graph has ``2**depth - 1`` nodes: leaves ``(identity, i)`` and inner nodes ``(add, left, right)``.
Both frameworks get the same dict graph and resolve dependencies on their scheduler; the client
receives only the root. Each run is repeated ``--rounds`` times after a warm-up; the best and the
median are printed, in nodes per second. dask.distributed runs only when it is importable.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import logging
import statistics
import time
from collections.abc import Callable
from typing import Any


def identity(x: int) -> int:
    """A leaf."""
    return x


def add(x: int, y: int) -> int:
    """An inner node."""
    return x + y


def tree_graph(depth: int) -> tuple[dict[str, Any], str, int]:
    """A binary-tree sum: ``(graph, root key, expected value)``."""
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


def measure(run: Callable[[], int], expected: int, rounds: int) -> list[float]:
    """Seconds per run, after one warm-up; checks every answer."""
    assert run() == expected
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        assert run() == expected
        times.append(time.perf_counter() - start)
    return times


def bench_scaler(workers: int, graph: dict[str, Any], root: str, expected: int, rounds: int) -> list[float]:
    from scaler import Client, SchedulerClusterCombo

    cluster = SchedulerClusterCombo(n_workers=workers, logging_level="WARNING")
    with cluster, Client(address=cluster.get_address()) as client:
        return measure(lambda: client.get(graph, [root])[root], expected, rounds)


def bench_dask(workers: int, graph: dict[str, Any], root: str, expected: int, rounds: int) -> list[float]:
    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)
    with (
        LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        return measure(lambda: client.get(graph, root), expected, rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=10, help="tree depth; nodes = 2**depth - 1 (default 10)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="depth 6, 2 rounds")
    args = parser.parse_args()
    if args.quick:
        args.depth, args.rounds = 6, 2
    graph, root, expected = tree_graph(args.depth)
    results = {"scaler": bench_scaler(args.workers, graph, root, expected, args.rounds)}
    if importlib.util.find_spec("distributed") is not None:
        with contextlib.suppress(KeyboardInterrupt):
            results["dask"] = bench_dask(args.workers, graph, root, expected, args.rounds)
    nodes = len(graph)
    print(f"\n{nodes:,} nodes (binary-tree sum, depth {args.depth}), {args.workers} workers, {args.rounds} rounds")
    print(f"{'':10}{'best (s)':>12}{'median (s)':>12}{'nodes/s (best)':>16}")
    for name, times in results.items():
        best, median = min(times), statistics.median(times)
        print(f"{name:10}{best:12.3f}{median:12.3f}{nodes / best:16,.0f}")
    if "dask" in results:
        ratio = min(results["dask"]) / min(results["scaler"])
        print(f"\nscaler is {ratio:.2f}x dask.distributed's speed on this graph (best of each)")


if __name__ == "__main__":
    main()
