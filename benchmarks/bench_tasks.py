"""Side-by-side task benchmarks: scaler, concurrent.futures.ProcessPoolExecutor and dask.distributed.

Run it from the repository root::

    python benchmarks/bench_tasks.py                 # 2 workers, 10,000 tasks
    python benchmarks/bench_tasks.py --workers 4 --tasks 50000
    python benchmarks/bench_tasks.py --quick         # small counts, for a smoke test

For each framework, with the same number of single-threaded worker processes, it measures:

- startup: from creating the cluster until every worker process has answered a task;
- throughput: submit ``--tasks`` no-op tasks one by one, then wait for all of them (after a warm-up);
- latency: ``--rounds`` sequential submit -> result round trips, p50 and p99;
- cancel: with every worker busy in a blocking task, submit ``--cancels`` more blocking tasks, then
  cancel them one after another, each with that framework's own ``cancel()``.

dask.distributed is measured only when it is importable (``pip install -e '.[bench]'``). Every
process the benchmark starts is stopped before it exits; it checks, and exits with status 1 if
any child process is left behind.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib.util
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from scaler.bench.peers import Session, peer
from scaler.bench.processes import descendants, leftover_processes
from scaler.bench.workloads import busy_workers, latency_ms, noop_throughput

# -- measurement: the shared parts live in scaler.bench (scaler_bench runs them too) -----------------


@dataclass
class Settings:
    workers: int
    tasks: int
    rounds: int
    cancels: int


@dataclass
class Result:
    name: str
    startup_s: float = float("nan")
    throughput: float = float("nan")
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    cancel_ms: float = float("nan")
    cancelled: int = 0
    extra: dict[str, float] = field(default_factory=dict)
    error: str = ""


def measure_cancel(session: Session, settings: Settings) -> tuple[float, int]:
    """Time ``settings.cancels`` cancels of pending tasks, one after another, while the workers are busy."""
    with busy_workers(session, settings.workers) as submit_blocked:
        pending = [submit_blocked() for _ in range(settings.cancels)]
        time.sleep(0.2)  # let the submissions settle where they wait (scheduler, worker queue or call queue)
        start = time.perf_counter()
        cancelled = sum(bool(session.cancel(future)) for future in pending)
        elapsed_ms = (time.perf_counter() - start) * 1000
    return elapsed_ms, cancelled


def measure_cancel_pipelined(session: Session, settings: Settings) -> float:
    """scaler only: send every cancel without waiting (``cancel(timeout=0)``), then wait until all are cancelled."""
    with busy_workers(session, settings.workers) as submit_blocked:
        pending = [submit_blocked() for _ in range(settings.cancels)]
        time.sleep(0.2)
        start = time.perf_counter()
        session.cancel_many(pending)
        concurrent.futures.wait(pending, timeout=30)
        elapsed_ms = (time.perf_counter() - start) * 1000
        if not all(future.cancelled() for future in pending):
            raise RuntimeError("scaler: not every pipelined cancel ended cancelled")
    return elapsed_ms


def bench(peer_id: str, name: str, settings: Settings) -> Result:
    """Start the framework (timed until every worker has answered), then measure it."""
    result = Result(name)
    start = time.perf_counter()
    session = peer(peer_id).open(settings.workers)
    try:
        result.startup_s = time.perf_counter() - start
        result.throughput = noop_throughput(session, settings.tasks)
        result.p50_ms, result.p99_ms = latency_ms(session, settings.rounds)
        result.cancel_ms, result.cancelled = measure_cancel(session, settings)
        if peer_id == "scaler":
            result.extra["cancel_pipelined_ms"] = measure_cancel_pipelined(session, settings)
    finally:
        session.close()
    return result


# -- report ------------------------------------------------------------------------------------------


def _fmt(value: float, digits: int) -> str:
    return "-" if value != value else f"{value:,.{digits}f}"  # NaN -> "-"


def print_report(results: list[Result], settings: Settings) -> None:
    names = [result.name for result in results]
    width = 14
    print(
        f"\n{settings.workers} workers; {settings.tasks:,} no-op tasks; {settings.rounds} round trips; "
        f"{settings.cancels} cancels.  Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.system()}"
    )
    header = f"{'':34}" + "".join(f"{name:>{width}}" for name in names)
    print(header)
    print("-" * len(header))
    rows: list[tuple[str, Callable[[Result], str]]] = [
        ("startup (s)", lambda r: _fmt(r.startup_s, 2)),
        ("throughput (tasks/s)", lambda r: _fmt(r.throughput, 0)),
        ("latency p50 (ms)", lambda r: _fmt(r.p50_ms, 3)),
        ("latency p99 (ms)", lambda r: _fmt(r.p99_ms, 3)),
        (f"cancel {settings.cancels} pending (ms)", lambda r: _fmt(r.cancel_ms, 1)),
        ("  of which ended cancelled", lambda r: "-" if r.error else str(r.cancelled)),
        ("  pipelined, cancel(timeout=0) (ms)", lambda r: _fmt(r.extra.get("cancel_pipelined_ms", float("nan")), 1)),
    ]
    for label, cell in rows:
        print(f"{label:34}" + "".join(f"{cell(result):>{width}}" for result in results))

    base = next((r for r in results if r.name == "ProcessPool" and not r.error), None)
    if base is not None:
        print("\nratio vs ProcessPoolExecutor (throughput: higher is better; times: lower is better)")
        print(header)
        print("-" * len(header))
        ratios: list[tuple[str, Callable[[Result], float], float]] = [
            ("throughput", lambda r: r.throughput, base.throughput),
            ("latency p50", lambda r: r.p50_ms, base.p50_ms),
            ("latency p99", lambda r: r.p99_ms, base.p99_ms),
            (f"cancel {settings.cancels} pending", lambda r: r.cancel_ms, base.cancel_ms),
        ]
        for label, metric, reference in ratios:
            cells = "".join(f"{_fmt(metric(result) / reference, 2) + 'x':>{width}}" for result in results)
            print(f"{label:34}" + cells)
    for result in results:
        if result.error:
            print(f"\n{result.name} failed: {result.error}")
    print(
        "\nnotes: cancel is sequential, one future.cancel() after another. scaler's cancel() blocks until the "
        "scheduler\nconfirms (a round trip through scheduler and worker); ProcessPoolExecutor's is local and "
        "cannot cancel\nthe few calls already moved to its call queue; dask's cancel() returns once the request "
        "is queued for its\nscheduler, without waiting for an answer."
    )


# -- main --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> tuple[Settings, bool]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="worker processes per framework (default 2)")
    parser.add_argument("--tasks", type=int, default=None, help="no-op tasks for throughput (default 10000)")
    parser.add_argument("--rounds", type=int, default=None, help="sequential round trips for latency (default 500)")
    parser.add_argument("--cancels", type=int, default=None, help="pending tasks to cancel (default 200)")
    parser.add_argument("--quick", action="store_true", help="small counts, for a smoke test (well under 30 s)")
    parser.add_argument("--no-dask", action="store_true", help="skip dask.distributed even if it is installed")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    defaults = (300, 50, 20) if args.quick else (10_000, 500, 200)
    tasks = args.tasks if args.tasks is not None else defaults[0]
    settings = Settings(
        workers=args.workers,
        tasks=tasks,
        rounds=max(2, args.rounds if args.rounds is not None else defaults[1]),
        cancels=args.cancels if args.cancels is not None else defaults[2],
    )
    return settings, not args.no_dask


def main(argv: list[str] | None = None) -> int:
    settings, want_dask = parse_args(argv)
    before = descendants()
    benches = [("ppe", "ProcessPool"), ("scaler", "scaler")]  # PPE first: forking is safest before other threads
    if want_dask:
        if importlib.util.find_spec("distributed") is not None:
            benches.append(("dask", "dask"))
        else:
            print("dask.distributed is not installed; skipping it (pip install -e '.[bench]')")
    results = []
    for peer_id, name in benches:
        print(f"running {name} ...", flush=True)
        try:
            results.append(bench(peer_id, name, settings))
        except Exception as error:  # report the failure in the table and carry on with the others
            results.append(Result(name, error=f"{type(error).__name__}: {error}"))
    order = {"scaler": 0, "ProcessPool": 1, "dask": 2}
    print_report(sorted(results, key=lambda r: order[r.name]), settings)
    left = leftover_processes(before)
    if left:
        print("\nchild processes left behind:\n  " + "\n  ".join(left))
        return 1
    print("\nall child processes have exited")
    return 1 if any(result.error for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
