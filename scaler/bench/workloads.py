"""The workloads: what each row of the table measures, on any framework's ``Session``.

A workload runs once per round and per framework and returns one figure per row it owns. Most run
in an open session (``Workload.fresh`` is False); start-up and memory need a framework that has
done nothing yet, so they get the ``Peer`` and start their own.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from scaler.bench.peers import Peer, Session
from scaler.bench.tasks import MIB, block, distinct_payloads, make_payload, noop, payload_size, tree_graph

BLOCK_SECONDS = 30.0  # how long a blocking task would hold its worker if no one released it
SETTLE_TIMEOUT_SECONDS = 60.0  # the longest wait for futures to end before a workload gives up


# --quick: every workload in a few seconds per framework.
QUICK: dict[str, Any] = {
    "tasks": 300,
    "latency_samples": 50,
    "payload_tasks": 8,
    "memory_futures": 1_000,
    "cancels": 20,
    "graph_depth": 6,
}


@dataclass(frozen=True)
class Settings:
    """How much each workload does; ``quick()`` is small enough for a test."""

    workers: int = 2
    rounds: int = 3
    tasks: int = 5_000  # no-op tasks for the throughput rows
    latency_samples: int = 500  # sequential round trips
    payload_tasks: int = 64  # tasks of 1 MiB arguments, and of 1 MiB results
    payload_bytes: int = MIB
    memory_futures: int = 20_000
    cancels: int = 200
    cancel_task_seconds: float = 1.0
    graph_depth: int = 10  # 2**depth - 1 nodes

    @classmethod
    def quick(cls, workers: int = 2, rounds: int = 1) -> Settings:
        """Small counts: every workload in a few seconds per framework."""
        return cls(workers=workers, rounds=rounds, **QUICK)

    def as_dict(self) -> dict[str, Any]:
        """The settings, for the JSON report."""
        return asdict(self)


# -- building blocks, shared with benchmarks/bench_tasks.py ------------------------------------------


def warm_up(session: Session, count: int) -> None:
    """Run ``count`` no-op tasks, so that functions are cached and processes are warm."""
    session.wait([session.submit(noop, i) for i in range(count)])


def timed_noops(session: Session, tasks: int) -> float:
    """Seconds to submit ``tasks`` no-op tasks one by one and wait for all of them."""
    start = time.perf_counter()
    futures = [session.submit(noop, i) for i in range(tasks)]
    session.wait(futures)
    elapsed = time.perf_counter() - start
    if session.results(futures[-1:]) != [tasks - 1]:
        raise RuntimeError(f"{session.name}: the last no-op task returned a wrong value")
    return elapsed


def noop_throughput(session: Session, tasks: int) -> float:
    """No-op tasks per second: a submit loop, then a wait for all (after a warm-up)."""
    warm_up(session, min(tasks, 1_000))
    return tasks / timed_noops(session, tasks)


def map_throughput(session: Session, tasks: int) -> float:
    """No-op tasks per second through the framework's own bulk call (``starmap``, ``map``)."""
    args = [(i,) for i in range(tasks)]
    session.starmap(noop, args[: min(tasks, 1_000)])
    start = time.perf_counter()
    results = session.starmap(noop, args)
    elapsed = time.perf_counter() - start
    if results[-1] != tasks - 1:
        raise RuntimeError(f"{session.name}: map returned a wrong value")
    return tasks / elapsed


def latency_ms(session: Session, samples: int) -> tuple[float, float]:
    """Sequential submit -> result round trips of a no-op task: (p50, p99) in milliseconds."""
    for i in range(min(20, samples)):
        session.results([session.submit(noop, i)])
    times = []
    for i in range(samples):
        start = time.perf_counter()
        session.results([session.submit(noop, i)])
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), statistics.quantiles(times, n=100, method="inclusive")[98]


def wait_ended(session: Session, futures: list[Any], timeout: float = SETTLE_TIMEOUT_SECONDS) -> None:
    """Return once every future has ended (a result, an error or cancelled); RuntimeError after ``timeout``."""
    deadline = time.monotonic() + timeout
    left = [future for future in futures if not session.done(future)]
    while left:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{session.name}: {len(left)} futures had not ended after {timeout:g}s")
        time.sleep(0.001)
        left = [future for future in left if not session.done(future)]


@contextlib.contextmanager
def blocking_tasks() -> Iterator[tuple[str, str]]:
    """A stop file's path (not created yet) and a directory where ``block`` tasks mark their start.

    On exit the stop file is created, so any blocking task still running returns at once.
    """
    with tempfile.TemporaryDirectory(prefix="scaler-bench-") as directory:
        stop_path = os.path.join(directory, "stop")
        started_dir = os.path.join(directory, "started")
        os.mkdir(started_dir)
        try:
            yield stop_path, started_dir
        finally:
            pathlib.Path(stop_path).touch()


def wait_started(started_dir: str, count: int, timeout: float = 30.0) -> bool:
    """Whether ``count`` blocking tasks have started within ``timeout``."""
    deadline = time.monotonic() + timeout
    while len(os.listdir(started_dir)) < count:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


@contextlib.contextmanager
def busy_workers(session: Session, workers: int) -> Iterator[Callable[[], Any]]:
    """Occupy every worker with a blocking task; yields ``submit_blocked()`` for more of them.

    On exit the blocking tasks are released, and the running ones are waited for.
    """
    with blocking_tasks() as (stop_path, started_dir):
        blockers = [session.submit(block, stop_path, started_dir, BLOCK_SECONDS) for _ in range(workers)]
        try:
            if not wait_started(started_dir, workers):
                print(f"  warning: {session.name}: not every worker started its blocking task", file=sys.stderr)
            yield lambda: session.submit(block, stop_path, started_dir, BLOCK_SECONDS)
        finally:
            pathlib.Path(stop_path).touch()
            session.wait(blockers)  # released: they return within milliseconds


def cancel_seconds(session: Session, settings: Settings) -> tuple[float, int]:
    """Cancel ``cancels`` one-second tasks one by one (``workers`` running, the rest queued) until all have ended.

    Returns the seconds from the first cancel until every future had ended, and how many ended cancelled.
    """
    with blocking_tasks() as (stop_path, started_dir):
        futures = [
            session.submit(block, stop_path, started_dir, settings.cancel_task_seconds) for _ in range(settings.cancels)
        ]
        if not wait_started(started_dir, settings.workers):
            raise RuntimeError(f"{session.name}: the first {settings.workers} tasks did not start")
        start = time.perf_counter()
        for future in futures:
            session.cancel(future)
        wait_ended(session, futures)
        elapsed = time.perf_counter() - start
        cancelled = sum(bool(future.cancelled()) for future in futures) if hasattr(futures[0], "cancelled") else -1
    return elapsed, cancelled


def payload_mib_per_second(session: Session, settings: Settings, direction: str) -> float:
    """MiB/s of ``payload_tasks`` tasks taking (``"args"``) or returning (``"results"``) ``payload_bytes`` each.

    Arguments differ from task to task, so none can be sent once and reused. The time runs from the
    first submit until every result is in this process.
    """
    count, size = settings.payload_tasks, settings.payload_bytes
    if direction == "args":
        session.results([session.submit(payload_size, data) for data in distinct_payloads(2, size)])
        payloads = distinct_payloads(count, size)
        start = time.perf_counter()
        results = session.results([session.submit(payload_size, data) for data in payloads])
        expected: Any = size
    else:
        session.results([session.submit(make_payload, size) for _ in range(2)])
        start = time.perf_counter()
        results = [len(value) for value in session.results([session.submit(make_payload, size) for _ in range(count)])]
        expected = size
    elapsed = time.perf_counter() - start
    if any(result != expected for result in results):
        raise RuntimeError(f"{session.name}: a {direction} payload task returned a wrong size")
    return count * size / MIB / elapsed


def graph_throughput(session: Session, depth: int) -> float:
    """Nodes per second of the binary-tree graph, after one warm-up run of it."""
    graph, root, expected = tree_graph(depth)
    if session.run_graph(graph, root) != expected:
        raise RuntimeError(f"{session.name}: the graph's warm-up run returned a wrong value")
    start = time.perf_counter()
    value = session.run_graph(graph, root)
    elapsed = time.perf_counter() - start
    if value != expected:
        raise RuntimeError(f"{session.name}: the graph returned a wrong value")
    return len(graph) / elapsed


def client_memory(peer: Peer, settings: Settings) -> dict[str, float]:
    """What ``memory_futures`` pending futures cost the client, each figure from a fresh process.

    Fresh, so that no earlier workload has grown the heap that the new futures would reuse; see
    ``scaler.bench.memory``.
    """
    figures: dict[str, float] = {}
    for kind in ("rss", "traced"):
        command = [sys.executable, "-m", "scaler.bench.memory", peer.id, str(settings.workers)]
        done = subprocess.run(
            [*command, str(settings.memory_futures), kind], capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0:
            raise RuntimeError(f"the memory probe failed: {done.stderr.strip().splitlines()[-1:] or done.returncode}")
        figures.update(json.loads(done.stdout.strip().splitlines()[-1]))
    return figures


# -- the workloads and the rows of the table ---------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """One thing to measure; ``rows`` are the ids of the table rows it fills."""

    id: str
    rows: tuple[str, ...]
    run: Callable[[Any, Settings], dict[str, float]]  # (Session or, when fresh, Peer) -> {row: figure}
    fresh: bool = False  # needs a framework that has done nothing yet: gets the Peer
    graphs: bool = False  # only for frameworks with task graphs
    peers: tuple[str, ...] | None = None  # only these frameworks (None: all)


def _latency(session: Session, settings: Settings) -> dict[str, float]:
    p50, p99 = latency_ms(session, settings.latency_samples)
    return {"latency_p50": p50, "latency_p99": p99}


def _memory(peer: Peer, settings: Settings) -> dict[str, float]:
    figures = client_memory(peer, settings)
    return {"memory_rss": figures["rss_mib"], "memory_traced": figures["traced_mib"]}


WORKLOADS: tuple[Workload, ...] = (
    Workload("noop", ("noop",), lambda s, c: {"noop": noop_throughput(s, c.tasks)}),
    Workload("map", ("map",), lambda s, c: {"map": map_throughput(s, c.tasks)}),
    Workload("latency", ("latency_p50", "latency_p99"), _latency),
    Workload("args", ("args_1mib",), lambda s, c: {"args_1mib": payload_mib_per_second(s, c, "args")}),
    Workload("results", ("results_1mib",), lambda s, c: {"results_1mib": payload_mib_per_second(s, c, "results")}),
    # The client process of dask's LocalCluster holds its scheduler too, and Ray keeps futures in its C++ core and
    # raylet: neither figure would be the client's alone (and dask needs minutes to drop 20,000 pending tasks here).
    Workload("memory", ("memory_rss", "memory_traced"), _memory, fresh=True, peers=("scaler", "ppe", "loky")),
    Workload("startup", ("startup",), lambda p, c: {"startup": p.startup(c.workers)}, fresh=True),
    Workload("cancel", ("cancel",), lambda s, c: {"cancel": cancel_seconds(s, c)[0]}),
    Workload("graph", ("graph",), lambda s, c: {"graph": graph_throughput(s, c.graph_depth)}, graphs=True),
)


def workload_ids() -> list[str]:
    """Every workload's id, in table order."""
    return [workload.id for workload in WORKLOADS]
