"""What a no-op task costs the whole machine, scaler beside ProcessPoolExecutor: CPU and thread wake-ups.

Run it from the repository root::

    python benchmarks/bench_switches.py                 # 2 workers, 5,000 tasks, 2 rounds
    python benchmarks/bench_switches.py --tasks 20000 --rounds 3

For each framework and round it submits ``--tasks`` no-op tasks after 500 of warm-up, waits for
every result, and reports per task:

- the CPU time of every process involved (psutil, user + system): the caller (both frameworks'
  threads idle in it), and the pool's workers, or scaler's scheduler, worker agents, fork servers
  and processors;
- the voluntary and involuntary context switches of every thread of those processes
  (``/proc/PID/task/*/status``): a voluntary one is a thread that blocked and was woken again.

Wall-clock rates move with the load on a shared machine; these counts move much less. Both
frameworks run in the same process one after the other, round by round. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import glob
import time
from collections.abc import Callable
from typing import Any

import psutil


def noop() -> None:
    """The task."""


def _switches(pids: list[int]) -> tuple[int, int]:
    voluntary = involuntary = 0
    for pid in pids:
        for path in glob.glob(f"/proc/{pid}/task/*/status"):
            try:
                with open(path) as status:
                    for line in status:
                        if line.startswith("voluntary_ctxt_switches"):
                            voluntary += int(line.split()[1])
                        elif line.startswith("nonvoluntary_ctxt_switches"):
                            involuntary += int(line.split()[1])
            except OSError:  # a thread or process that ended meanwhile
                pass
    return voluntary, involuntary


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def measure(submit: Callable[..., Any], processes: Callable[[], list[int]], tasks: int) -> dict[str, float]:
    """One round: ``tasks`` no-ops submitted, then every result read; ``processes()``: the framework's pids."""
    for future in [submit(noop) for _ in range(500)]:
        future.result()
    pids = [psutil.Process().pid, *processes()]
    voluntary, involuntary = _switches(pids)
    cpu = _cpu(pids)
    start = time.perf_counter()
    for future in [submit(noop) for _ in range(tasks)]:
        future.result()
    elapsed = time.perf_counter() - start
    voluntary_after, involuntary_after = _switches(pids)
    return {
        "rate": tasks / elapsed,
        "cpu_us": 1e6 * (_cpu(pids) - cpu) / tasks,
        "voluntary": (voluntary_after - voluntary) / tasks,
        "involuntary": (involuntary_after - involuntary) / tasks,
        "processes": len(pids),
    }


def main() -> None:
    """Run the rounds and print one line per framework and round."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="worker processes for each (default 2)")
    parser.add_argument("--tasks", type=int, default=5000, help="no-op tasks per round (default 5,000)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each (default 2)")
    args = parser.parse_args()

    from scaler import Client, SchedulerClusterCombo

    combo = SchedulerClusterCombo(n_workers=args.workers, logging_level="WARNING")
    client = Client(address=combo.get_address())
    pool = concurrent.futures.ProcessPoolExecutor(args.workers)

    def scaler_processes() -> list[int]:
        scheduler = psutil.Process(combo.scheduler_pid())
        return [scheduler.pid] + [child.pid for child in scheduler.children(recursive=True)]

    def pool_processes() -> list[int]:
        return list(pool._processes or {})  # started by the warm-up

    try:
        print(f"{'':8s} {'tasks/s':>8s} {'CPU µs/task':>12s} {'voluntary/task':>15s} {'involuntary/task':>17s}")
        for _ in range(args.rounds):
            for name, submit, processes in (
                ("pool", pool.submit, pool_processes),
                ("scaler", client.submit, scaler_processes),
            ):
                row = measure(submit, processes, args.tasks)
                print(
                    f"{name:8s} {row['rate']:8,.0f} {row['cpu_us']:12,.0f} {row['voluntary']:15.2f} "
                    f"{row['involuntary']:17.2f}   ({row['processes']:.0f} processes)",
                    flush=True,
                )
    finally:
        pool.shutdown()
        client.disconnect()
        combo.shutdown()


if __name__ == "__main__":
    main()
