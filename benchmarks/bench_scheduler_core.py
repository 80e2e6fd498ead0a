"""The scheduler core's own cost per task, without sockets: submit, dispatch, result, in bursts.

Run it from the repository root::

    python benchmarks/bench_scheduler_core.py            # 100,000 tasks, 4 workers, 3 runs
    python benchmarks/bench_scheduler_core.py --tasks 20000 --runs 5

It feeds ``SchedulerState`` the way the server's loop does (a burst of messages with
``dispatch=False``, then one ``dispatch()``), answers every dispatched task at once, and reports
tasks per second of CPU time (``time.process_time``), which a busy machine disturbs less than the
wall clock. End-to-end throughput is ``bench_tasks.py``'s job; this one isolates the core, where a
refactor of the state shows first.
"""

from __future__ import annotations

import argparse
import time

from scaler.protocol.content_id import content_id
from scaler.protocol.messages import (
    ArgumentKind,
    ClientHeartbeat,
    Task,
    TaskArgument,
    TaskResult,
    TaskStatus,
    WorkerHeartbeat,
)
from scaler.scheduler.state import SchedulerConfig, SchedulerState, Send


def run(tasks: int, workers: int, burst: int) -> float:
    """Push ``tasks`` through a fresh core; return tasks per CPU second."""
    function = b"f" * 200
    function_id = content_id(function)
    state = SchedulerState(SchedulerConfig(per_worker_queue_size=1000))
    for number in range(workers):
        state.handle(b"worker-%d" % number, WorkerHeartbeat(0.0, 0, 0.0, 0), 0.0)
    state.handle(b"client", ClientHeartbeat(0.0), 0.0)
    argument = [TaskArgument("", ArgumentKind.INLINE, b"1")]
    pending: list[tuple[bytes, Task]] = []
    sent, now = 0, 0.0
    start = time.process_time()
    while sent < tasks or pending:
        out = []
        for _ in range(min(burst, tasks - sent)):
            task = Task(sent.to_bytes(16, "big"), function_id, function if sent == 0 else b"", argument, 0)
            out += state.handle(b"client", task, now, dispatch=False)
            sent += 1
        out += state.dispatch()
        pending += [(i.to, i.message) for i in out if isinstance(i, Send) and isinstance(i.message, Task)]
        answered, pending = pending[:burst], pending[burst:]
        for worker, task in answered:
            state.handle(worker, TaskResult(task.task_id, TaskStatus.SUCCESS, b"r", task.attempt), now, dispatch=False)
        state.dispatch()
        now += 0.001
    elapsed = time.process_time() - start
    if state.tasks:
        raise RuntimeError(f"{len(state.tasks)} tasks left in the core")
    return tasks / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks per run (default 100000)")
    parser.add_argument("--workers", type=int, default=4, help="workers (default 4)")
    parser.add_argument("--burst", type=int, default=500, help="messages per loop turn (default 500)")
    parser.add_argument("--runs", type=int, default=3, help="runs; the best is reported (default 3)")
    args = parser.parse_args()
    rates = [run(args.tasks, args.workers, args.burst) for _ in range(args.runs)]
    print(f"scheduler core: {max(rates):,.0f} tasks per CPU second (best of {[f'{r:,.0f}' for r in rates]})")


if __name__ == "__main__":
    main()
