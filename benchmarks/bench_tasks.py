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
import contextlib
import importlib.util
import logging
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import cloudpickle
import psutil

# -- task functions: module level, so they pickle by reference (or by value from __main__) ----------


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


# -- measurement -------------------------------------------------------------------------------------

BLOCK_SECONDS = 10.0  # how long a blocking task would sleep if no one released it


@dataclass
class Settings:
    workers: int
    tasks: int
    rounds: int
    cancels: int
    warmup: int


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


@dataclass
class Framework:
    """What the measurements need from one framework."""

    name: str
    submit: Callable[..., Any]  # submit(fn, *args) -> future
    wait_all: Callable[[list[Any]], None]
    cancel: Callable[[Any], bool]  # cancel one future, the framework's way; True if it ended cancelled


def wait_for_workers(framework: Framework, n_workers: int, timeout: float = 60.0) -> None:
    """Return once tasks have run on ``n_workers`` distinct processes."""
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    while len(seen) < n_workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{framework.name}: only {len(seen)} of {n_workers} workers answered in {timeout:g}s")
        futures = [framework.submit(worker_pid, 0.05) for _ in range(2 * n_workers)]
        seen |= {future.result() for future in futures}


def measure_throughput(framework: Framework, settings: Settings) -> float:
    framework.wait_all([framework.submit(noop, i) for i in range(settings.warmup)])
    start = time.perf_counter()
    futures = [framework.submit(noop, i) for i in range(settings.tasks)]
    framework.wait_all(futures)
    elapsed = time.perf_counter() - start
    assert futures[-1].result() == settings.tasks - 1
    return settings.tasks / elapsed


def measure_latency(framework: Framework, settings: Settings) -> tuple[float, float]:
    for i in range(min(20, settings.rounds)):
        framework.submit(noop, i).result()
    samples = []
    for i in range(settings.rounds):
        start = time.perf_counter()
        framework.submit(noop, i).result()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), statistics.quantiles(samples, n=100, method="inclusive")[98]


@contextlib.contextmanager
def busy_workers(framework: Framework, n_workers: int) -> Iterator[Callable[[], Any]]:
    """Occupy every worker with a blocking task; yields ``submit_blocked()`` for more of them.

    On exit the blocking tasks are released, and the running ones are waited for.
    """
    with tempfile.TemporaryDirectory(prefix="scaler-bench-") as directory:
        stop_path = os.path.join(directory, "stop")
        started_dir = os.path.join(directory, "started")
        os.mkdir(started_dir)
        blockers = [framework.submit(block, stop_path, started_dir, BLOCK_SECONDS) for _ in range(n_workers)]
        try:
            deadline = time.monotonic() + 30
            while len(os.listdir(started_dir)) < n_workers and time.monotonic() < deadline:
                time.sleep(0.01)
            if len(os.listdir(started_dir)) < n_workers:
                print(f"  warning: {framework.name}: not every worker started its blocking task", file=sys.stderr)
            yield lambda: framework.submit(block, stop_path, started_dir, BLOCK_SECONDS)
        finally:
            pathlib.Path(stop_path).touch()
            framework.wait_all(blockers)  # released: they return within milliseconds


def measure_cancel(framework: Framework, settings: Settings) -> tuple[float, int]:
    """Time ``settings.cancels`` cancels of pending tasks, one after another, while the workers are busy."""
    with busy_workers(framework, settings.workers) as submit_blocked:
        pending = [submit_blocked() for _ in range(settings.cancels)]
        time.sleep(0.2)  # let the submissions settle where they wait (scheduler, worker queue or call queue)
        start = time.perf_counter()
        cancelled = sum(bool(framework.cancel(future)) for future in pending)
        elapsed_ms = (time.perf_counter() - start) * 1000
    return elapsed_ms, cancelled


def measure_cancel_pipelined(framework: Framework, settings: Settings) -> float:
    """scaler only: send every cancel without waiting (``cancel(timeout=0)``), then wait until all are cancelled."""
    with busy_workers(framework, settings.workers) as submit_blocked:
        pending = [submit_blocked() for _ in range(settings.cancels)]
        time.sleep(0.2)
        start = time.perf_counter()
        for future in pending:
            future.cancel(timeout=0)
        concurrent.futures.wait(pending, timeout=30)
        elapsed_ms = (time.perf_counter() - start) * 1000
        if not all(future.cancelled() for future in pending):
            raise RuntimeError("scaler: not every pipelined cancel ended cancelled")
    return elapsed_ms


def run_all(framework: Framework, result: Result, settings: Settings) -> None:
    result.throughput = measure_throughput(framework, settings)
    result.p50_ms, result.p99_ms = measure_latency(framework, settings)
    result.cancel_ms, result.cancelled = measure_cancel(framework, settings)


# -- frameworks --------------------------------------------------------------------------------------


def bench_scaler(settings: Settings) -> Result:
    from scaler import Client, SchedulerClusterCombo

    result = Result("scaler")
    start = time.perf_counter()
    with (
        SchedulerClusterCombo(n_workers=settings.workers, logging_level="WARNING") as combo,
        Client(address=combo.get_address()) as client,
    ):
        framework = Framework(
            "scaler",
            client.submit,
            lambda futures: concurrent.futures.wait(futures),
            lambda future: future.cancel(),
        )
        wait_for_workers(framework, settings.workers)
        result.startup_s = time.perf_counter() - start
        run_all(framework, result, settings)
        result.extra["cancel_pipelined_ms"] = measure_cancel_pipelined(framework, settings)
    return result


def bench_process_pool(settings: Settings) -> Result:
    result = Result("ProcessPool")
    start = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(settings.workers) as executor:
        framework = Framework(
            "ProcessPool",
            executor.submit,
            lambda futures: concurrent.futures.wait(futures),
            lambda future: future.cancel(),
        )
        wait_for_workers(framework, settings.workers)
        result.startup_s = time.perf_counter() - start
        run_all(framework, result, settings)
    return result


def bench_dask(settings: Settings) -> Result:
    import distributed

    result = Result("dask")
    start = time.perf_counter()
    with (
        distributed.LocalCluster(
            n_workers=settings.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):

        def cancel(future: Any) -> bool:
            future.cancel()
            return bool(future.cancelled())

        framework = Framework(
            "dask",
            lambda fn, *args: client.submit(fn, *args, pure=False),
            lambda futures: distributed.wait(futures),
            cancel,
        )
        wait_for_workers(framework, settings.workers)
        result.startup_s = time.perf_counter() - start
        run_all(framework, result, settings)
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


def descendants() -> set[int]:
    """Live processes below this one, except multiprocessing's resource tracker.

    The tracker is this interpreter's own helper (dask's worker processes start it): it exits when
    this process exits, so it is not something the benchmark left behind.
    """
    alive = set()
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            if child.status() == psutil.STATUS_ZOMBIE:
                continue
            if any("multiprocessing.resource_tracker" in part for part in child.cmdline()):
                continue
            alive.add(child.pid)
    return alive


def leftover_processes(before: set[int], timeout: float = 15.0) -> list[str]:
    """Wait up to ``timeout`` for every child started since ``before`` to exit; describe those still alive."""
    deadline = time.monotonic() + timeout
    left = descendants() - before
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = descendants() - before
    described = []
    for pid in sorted(left):
        with contextlib.suppress(psutil.NoSuchProcess):
            described.append(f"{pid} {' '.join(psutil.Process(pid).cmdline())[:120]}")
    return described


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
        warmup=min(tasks, 1000),
    )
    return settings, not args.no_dask


def main(argv: list[str] | None = None) -> int:
    settings, want_dask = parse_args(argv)
    if __name__ != "__main__":  # imported under its own name: the workers cannot import it, so ship it by value
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
    before = descendants()
    benches: list[tuple[str, Callable[[Settings], Result]]] = [
        ("ProcessPool", bench_process_pool),  # first: it forks, and forking is safest before other threads exist
        ("scaler", bench_scaler),
    ]
    if want_dask:
        if importlib.util.find_spec("distributed") is not None:
            benches.append(("dask", bench_dask))
        else:
            print("dask.distributed is not installed; skipping it (pip install -e '.[bench]')")
    results = []
    for name, bench in benches:
        print(f"running {name} ...", flush=True)
        try:
            results.append(bench(settings))
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
