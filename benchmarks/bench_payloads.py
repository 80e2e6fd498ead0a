"""Big payloads, side by side: scaler against concurrent.futures.ProcessPoolExecutor, in one run.

Run it from the repository root::

    python benchmarks/bench_payloads.py                  # 2 workers, 100 tasks of 1 MiB, 5 rounds
    python benchmarks/bench_payloads.py --tasks 200 --mib 4 --rounds 3
    python benchmarks/bench_payloads.py --only scaler    # for a profiler attached to the processes

Workloads, each with bytes and with a NumPy array:

- arguments: ``--tasks`` tasks, each taking its own ``--mib`` MiB argument (all distinct, so no
  cache or content id can skip one) and returning its length;
- results: ``--tasks`` tasks, each returning ``--mib`` MiB; every result is fetched.

A round submits all tasks, then waits for every result; MiB/s is payload MiB over the round's
wall time; CPU ms per MiB is the CPU time of every process (client, scheduler, workers, their
processors; the pool's processes) per payload MiB, which a busy machine changes less. Both
frameworks stay up for the whole run and take turns, round by round, so a busy machine slows
both alike; the table gives each one's median round and the ratio of medians.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import psutil

MIB = 1024 * 1024


def payload_size(value: Any) -> int:
    """The argument task: how many bytes it got."""
    return int(value.nbytes) if isinstance(value, np.ndarray) else len(value)


def make_bytes(size: int, seed: int) -> bytes:
    """The result task: ``size`` bytes."""
    return bytes([seed % 256]) * size


def make_array(size: int, seed: int) -> np.ndarray:
    """The result task: a ``size``-byte NumPy array."""
    return np.full(size, seed % 256, dtype=np.uint8)


def _arguments(kind: str, tasks: int, size: int) -> list[Any]:
    base = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8)
    values = []
    for index in range(tasks):
        array = base.copy()
        array[:8] = np.frombuffer(index.to_bytes(8, "little"), dtype=np.uint8)  # every payload is distinct
        values.append(array if kind == "numpy" else array.tobytes())
    return values


Submit = Callable[..., concurrent.futures.Future]


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and every process under it: a load-independent cost."""
    total = 0.0
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def round_arguments(submit: Submit, values: list[Any]) -> float:
    """Seconds to run one task per value and collect every result."""
    start = time.perf_counter()
    futures = [submit(payload_size, value) for value in values]
    sizes = [future.result() for future in futures]
    elapsed = time.perf_counter() - start
    assert all(size == payload_size(values[0]) for size in sizes)
    return elapsed


def round_results(submit: Submit, kind: str, tasks: int, size: int) -> float:
    """Seconds to run ``tasks`` tasks returning ``size`` bytes each and fetch every result."""
    make = make_array if kind == "numpy" else make_bytes
    start = time.perf_counter()
    futures = [submit(make, size, index) for index in range(tasks)]
    values = [future.result() for future in futures]
    elapsed = time.perf_counter() - start
    assert all(payload_size(value) == size for value in values)
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--mib", type=float, default=1.0, help="payload size in MiB")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=("scaler", "pool"), default=None)
    parser.add_argument("--workloads", default="arguments,results", help="comma-separated: arguments,results")
    parser.add_argument("--kinds", default="bytes,numpy", help="comma-separated: bytes,numpy")
    args = parser.parse_args(argv)
    size = int(args.mib * MIB)
    workloads = args.workloads.split(",")
    kinds = args.kinds.split(",")

    frameworks: dict[str, Submit] = {}
    stack: list[Callable[[], None]] = []
    try:
        if args.only != "scaler":
            # Forkserver: the client's threads exist before the pool starts its processes.
            pool = concurrent.futures.ProcessPoolExecutor(
                args.workers, mp_context=multiprocessing.get_context("forkserver")
            )
            stack.append(lambda: pool.shutdown(cancel_futures=True))
            frameworks["ProcessPool"] = pool.submit
        if args.only != "pool":
            from scaler import Client, SchedulerClusterCombo

            combo = SchedulerClusterCombo(n_workers=args.workers, logging_level="WARNING")
            stack.append(combo.shutdown)
            client = Client(address=combo.get_address())
            stack.append(client.disconnect)
            frameworks["scaler"] = client.submit
        for submit in frameworks.values():  # warm up: every worker started, functions sent
            [f.result() for f in [submit(payload_size, b"x" * 1000) for _ in range(4 * args.workers)]]
            [f.result() for f in [submit(make_array, 1000, 1) for _ in range(4 * args.workers)]]
            [f.result() for f in [submit(make_bytes, 1000, 1) for _ in range(4 * args.workers)]]

        times: dict[tuple[str, str, str], list[float]] = {}
        cpus: dict[tuple[str, str, str], list[float]] = {}
        for workload in workloads:
            for kind in kinds:
                values = _arguments(kind, args.tasks, size) if workload == "arguments" else []
                for _ in range(args.rounds):
                    for name, submit in frameworks.items():
                        cpu = cpu_seconds()
                        if workload == "arguments":
                            elapsed = round_arguments(submit, values)
                        else:
                            elapsed = round_results(submit, kind, args.tasks, size)
                        times.setdefault((workload, kind, name), []).append(elapsed)
                        cpus.setdefault((workload, kind, name), []).append(cpu_seconds() - cpu)
                del values
    finally:
        for close in reversed(stack):
            close()

    mib = args.tasks * size / MIB
    print(f"{args.tasks} tasks of {args.mib:g} MiB, {args.workers} workers, median of {args.rounds} rounds (MiB/s)")
    names = list(frameworks)
    print(
        f"{'workload':<12}{'kind':<8}"
        + "".join(f"{name:>14}" for name in names)
        + ("   ratio" if len(names) == 2 else "")
    )
    for workload in workloads:
        for kind in kinds:
            rates = {name: mib / statistics.median(times[(workload, kind, name)]) for name in names}
            line = f"{workload:<12}{kind:<8}" + "".join(f"{rates[name]:>14.0f}" for name in names)
            if len(names) == 2:
                line += f"{rates['scaler'] / rates['ProcessPool']:>8.2f}"
            print(line)
    print("CPU ms per MiB, all processes (median)")
    for workload in workloads:
        for kind in kinds:
            costs = {name: 1000 * statistics.median(cpus[(workload, kind, name)]) / mib for name in names}
            print(f"{workload:<12}{kind:<8}" + "".join(f"{costs[name]:>14.2f}" for name in names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
