"""Memory per pending task: in the client (scaler beside ProcessPoolExecutor) and in the scheduler core.

Run it from the repository root::

    python benchmarks/bench_memory.py client              # 20,000 pending futures, scaler and PPE
    python benchmarks/bench_memory.py client --tasks 50000 --rounds 3
    python benchmarks/bench_memory.py core                # 1,000,000 tasks queued in SchedulerState
    python benchmarks/bench_memory.py core --tasks 100000 --trace
    python benchmarks/bench_memory.py stream              # 1,000,000 no-op tasks through 1 worker

``client``: each round starts a fresh process per framework (they alternate, so a busy machine
disturbs both alike). It starts two workers, occupies both with a sleeping task, then submits
``--tasks`` more sleeping tasks, which stay pending, and reports the process's resident memory
before and after and the difference per future. With ``--trace``, tracemalloc's count of the
bytes Python allocated per future too (it is exact, whatever the load, but slows the submits).

``core``: no sockets. It feeds a fresh ``SchedulerState`` with no worker ``--tasks`` ``Task``
messages, encoded and decoded by the codec in frames of 1,000 as the server's loop gets them,
and reports resident memory per queued task (and, with ``--trace``, traced bytes per task and
the lines that allocated most).

``stream``: a real cluster of one worker with at most 10,000 tasks queued (backpressure). It
submits ``--tasks`` no-op tasks without keeping their futures and reports the scheduler's and
the client's resident memory as they run: it does not grow with the number of tasks.
``tests/faults/test_backpressure.py`` checks the same on 300,000 tasks, with the budget per
task that 1,000,000 tasks had.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from typing import Any

import psutil


def rss_bytes() -> int:
    """This process's resident memory, from /proc (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def nap(seconds: float) -> int:
    """A task that stays pending (or running) for ``seconds``."""
    time.sleep(seconds)
    return 0


# -- client ------------------------------------------------------------------------------------------


def client_child(framework: str, tasks: int, trace: bool) -> None:
    """In a fresh process: hold ``tasks`` pending futures of ``framework``; print one result line."""
    executor: Any
    if framework == "ppe":
        from concurrent.futures import ProcessPoolExecutor

        executor = ProcessPoolExecutor(2)
    else:
        from scaler import SchedulerClusterCombo
        from scaler.client.client import Client

        combo = SchedulerClusterCombo(n_workers=2, logging_level="WARNING")
        executor = Client(combo.get_address())
    executor.submit(nap, 0).result()
    blockers = [executor.submit(nap, 600) for _ in range(2)]  # both workers busy: the rest stays pending
    time.sleep(0.5)
    gc.collect()
    if trace:
        tracemalloc.start()
    before = rss_bytes()
    futures = [executor.submit(nap, 600) for _ in range(tasks)]
    time.sleep(1.0)  # let the client's threads settle (sent, queued)
    gc.collect()
    after = rss_bytes()
    traced = tracemalloc.get_traced_memory()[0] if trace else 0
    pending = sum(not future.done() for future in futures) + sum(not future.done() for future in blockers)
    print(f"RESULT {framework} {before} {after} {traced} {pending}", flush=True)
    for child in psutil.Process().children(recursive=True):  # the pending tasks would take ten minutes
        child.kill()
    os._exit(0)


def run_client(tasks: int, rounds: int, trace: bool) -> None:
    rows: dict[str, list[tuple[int, int, int]]] = {"scaler": [], "ppe": []}
    for _ in range(rounds):
        for framework in ("ppe", "scaler"):
            command = [sys.executable, __file__, "client-child", framework, str(tasks)] + (["--trace"] if trace else [])
            with tempfile.TemporaryFile("w+") as out:  # not a pipe: a straggling grandchild would hold it open
                subprocess.run(command, stdout=out, stderr=subprocess.DEVNULL, timeout=600, check=True)
                out.seek(0)
                output = out.read()
            line = next(line for line in output.splitlines() if line.startswith("RESULT"))
            _, name, before, after, traced, pending = line.split()
            if int(pending) != tasks + 2:
                raise RuntimeError(f"{name}: {pending} futures pending, expected {tasks + 2}")
            rows[name].append((int(before), int(after), int(traced)))
    print(f"{tasks:,} pending futures, median of {rounds} rounds (fresh process each)")
    print(f"{'':10} {'RSS before':>11} {'RSS after':>10} {'RSS per future':>15} {'traced per future':>18}")
    for name in ("scaler", "ppe"):
        before = statistics.median(r[0] for r in rows[name])
        after = statistics.median(r[1] for r in rows[name])
        per = statistics.median((r[1] - r[0]) / tasks for r in rows[name])
        traced = f"{statistics.median(r[2] / tasks for r in rows[name]):,.0f} B" if trace else "-"
        label = "scaler" if name == "scaler" else "PPE"
        print(f"{label:10} {before / 2**20:>7.1f} MiB {after / 2**20:>6.1f} MiB {per:>13,.0f} B {traced:>18}")


# -- scheduler core ----------------------------------------------------------------------------------


def run_core(tasks: int, trace: bool) -> None:
    from scaler.protocol import codec
    from scaler.protocol.content_id import content_id
    from scaler.protocol.messages import ArgumentKind, ClientHeartbeat, Task, TaskArgument
    from scaler.scheduler.state import SchedulerConfig, SchedulerState

    function = b"f" * 200
    function_id = content_id(function)
    state = SchedulerState(SchedulerConfig(max_number_of_tasks_waiting=0))  # one client may queue them all
    client = b"client-" + os.urandom(8).hex().encode()
    state.handle(client, ClientHeartbeat(0.0), 0.0)
    prefix = os.urandom(8)
    argument = b"\x80\x05K\x01."  # pickle of 1
    gc.collect()
    if trace:
        tracemalloc.start()
    before = rss_bytes()
    start = time.process_time()
    for first in range(0, tasks, 1000):
        messages = [
            Task(
                prefix + number.to_bytes(8, "big"),
                function_id,
                function if number == 0 else b"",
                [TaskArgument("", ArgumentKind.INLINE, argument)],
                0,
                function_name="noop",
            )
            for number in range(first, min(tasks, first + 1000))
        ]
        for message in codec.decode(codec.encode(messages)):
            state.handle(client, message, 0.0, dispatch=False)
        state.dispatch()
    cpu = time.process_time() - start
    gc.collect()
    after = rss_bytes()
    queued = state.statistics()["queued"]
    if queued != tasks:
        raise RuntimeError(f"{queued} tasks queued, expected {tasks}")
    print(f"{tasks:,} tasks queued in SchedulerState: {(after - before) / tasks:,.0f} B of RSS per task", end="")
    if trace:
        print(f", {tracemalloc.get_traced_memory()[0] / tasks:,.0f} B traced per task", end="")
    print(f" ({cpu:.1f} s of CPU)")
    if trace:
        for line in tracemalloc.take_snapshot().statistics("lineno")[:12]:
            print("   ", line)


# -- streamed tasks ----------------------------------------------------------------------------------


def run_stream(tasks: int) -> None:
    from scaler import Client, SchedulerClusterCombo

    done = 0

    def finished(_future: Any) -> None:
        nonlocal done
        done += 1

    every = max(1, tasks // 10)
    with SchedulerClusterCombo(n_workers=1, max_number_of_tasks_waiting=10_000, logging_level="WARNING") as combo:
        scheduler = psutil.Process(combo.scheduler_pid())
        me = psutil.Process()
        with Client(address=combo.get_address(), timeout_seconds=60) as client:
            rss: dict[str, list[int]] = {"scheduler": [], "client": []}
            started = time.monotonic()
            for index in range(tasks):
                client.submit(int, index).add_done_callback(finished)
                if index % every == 0:
                    rss["scheduler"].append(scheduler.memory_info().rss)
                    rss["client"].append(me.memory_info().rss)
            while done < tasks:
                time.sleep(0.05)
            elapsed = time.monotonic() - started
            rss["scheduler"].append(scheduler.memory_info().rss)
            rss["client"].append(me.memory_info().rss)
    print(f"{tasks:,} no-op tasks on 1 worker, at most 10,000 queued: {elapsed:.0f} s ({tasks / elapsed:,.0f}/s)")
    for name, values in rss.items():
        grew = (max(values) - values[0]) / 2**20
        series = " ".join(f"{value / 2**20:.0f}" for value in values)
        print(f"  {name:9} RSS grew {grew:.1f} MiB after the first task; MiB every {every:,} tasks: {series}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "client-child":
        client_child(sys.argv[2], int(sys.argv[3]), "--trace" in sys.argv)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["client", "core", "stream"])
    parser.add_argument("--tasks", type=int, default=None, help="client: 20000 futures; core and stream: 1000000 tasks")
    parser.add_argument("--rounds", type=int, default=3, help="client: fresh processes per framework (default 3)")
    parser.add_argument("--trace", action="store_true", help="also count Python's allocations (tracemalloc)")
    args = parser.parse_args()
    if args.what == "client":
        run_client(args.tasks or 20_000, args.rounds, args.trace)
    elif args.what == "core":
        run_core(args.tasks or 1_000_000, args.trace)
    else:
        run_stream(args.tasks or 1_000_000)


if __name__ == "__main__":
    main()
