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
import statistics
import time
from collections.abc import Callable
from typing import Any

from scaler.bench.peers import peer
from scaler.bench.tasks import tree_graph


def measure(run: Callable[[], int], expected: int, rounds: int) -> list[float]:
    """Seconds per run, after one warm-up; checks every answer."""
    assert run() == expected
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        assert run() == expected
        times.append(time.perf_counter() - start)
    return times


def bench(peer_id: str, workers: int, graph: dict[str, Any], root: str, expected: int, rounds: int) -> list[float]:
    """Seconds per run of ``graph`` on framework ``peer_id`` (scaler or dask), which resolves it on its scheduler."""
    session = peer(peer_id).open(workers)
    try:
        return measure(lambda: session.run_graph(graph, root), expected, rounds)
    finally:
        session.close()


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
    results = {"scaler": bench("scaler", args.workers, graph, root, expected, args.rounds)}
    if importlib.util.find_spec("distributed") is not None:
        with contextlib.suppress(KeyboardInterrupt):
            results["dask"] = bench("dask", args.workers, graph, root, expected, args.rounds)
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
