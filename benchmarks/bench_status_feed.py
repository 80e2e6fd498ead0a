"""What the status feed costs: no-op task throughput with the feed off, and on with a subscriber attached.

Run it from the repository root::

    python benchmarks/bench_status_feed.py                  # 2 workers, 10,000 tasks, 5 rounds
    python benchmarks/bench_status_feed.py --tasks 20000 --rounds 7
    python benchmarks/bench_status_feed.py --quick          # small counts, for a smoke test

One local cluster with ``--workers`` workers and its feed bound runs every round. For the "on"
runs a subscriber is attached: a separate process that reads everything the feed publishes and
decodes it into the typed messages, as ``scaler_top`` and ``scaler_ui`` do. For the "off" runs
nobody subscribes, so the scheduler records nothing, as with ``monitor_address="none"``. One
cluster rather than two: two clusters side by side differed from each other by more than the feed
costs (up to 15 % either way, from where their processes happened to run). Runs alternate (off,
on, on, off, ...) so that drift in the machine's load hits both alike; the report gives each run,
the medians, and the ratio on / off of the median throughputs (the issue's goal: 0.97 or more).
It also checks that the subscriber saw an event for every task of the "on" runs, so they did pay
for the events.

On a machine shared with other work the wall clock swings by more than the feed costs, so each
run also adds up the CPU time its processes used (scheduler, worker agents, processors, this
process's client, and for "on" the subscriber): CPU per task, and the throughput ratio it implies
on a machine the benchmark had to itself (off CPU / on CPU).

Last, it measures the feed's own CPU cost per task without sockets or other processes, which
load disturbs least: the scheduler core pushing tasks through submit, dispatch, start and result
with events off and on (taking and encoding them once per turn of 50 tasks), and a subscriber
decoding those events; their sum, set against the end-to-end CPU per task, is the share of the
feed in a CPU-bound run.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

import psutil


def noop(x: int) -> int:
    """The task whose cost is pure framework overhead."""
    return x


def subscribe(address: str) -> None:
    """The subscriber process: decode everything until SIGTERM, then print what it saw as JSON.

    It prints ``ready`` once it heard the feed, so the "on" runs start with it attached.
    """
    from scaler.monitor.feed import StatusFeed
    from scaler.protocol.messages import StatusEvents, StatusSnapshot, TaskEventKind

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    counts = {"snapshots": 0, "event_messages": 0, "task_events": 0, "finished_events": 0, "dropped": 0}
    with StatusFeed(address) as feed:
        while not stopping:
            for message in feed.receive(0.1):
                if isinstance(message, StatusSnapshot):
                    if not counts["snapshots"]:
                        print("ready", flush=True)
                    counts["snapshots"] += 1
                elif isinstance(message, StatusEvents):
                    counts["event_messages"] += 1
                    counts["task_events"] += len(message.tasks)
                    counts["finished_events"] += sum(event.kind is TaskEventKind.FINISHED for event in message.tasks)
                    counts["dropped"] += message.dropped
    print(json.dumps(counts), flush=True)


def attach(monitor: str) -> subprocess.Popen[str]:
    """Start a subscriber and wait until it hears the feed and the scheduler records events for it."""
    subscriber = subprocess.Popen([sys.executable, __file__, "--subscribe", monitor], stdout=subprocess.PIPE, text=True)
    assert subscriber.stdout is not None
    if subscriber.stdout.readline().strip() != "ready":
        subscriber.kill()
        raise SystemExit("the subscriber never heard the feed")
    time.sleep(0.3)  # the scheduler turns recording on at its next tick (0.1 s)
    return subscriber


def detach(subscriber: subprocess.Popen[str]) -> dict[str, int]:
    """Stop a subscriber; what it saw. The scheduler stops recording at its next tick."""
    subscriber.terminate()
    counts: dict[str, int] = json.loads(subscriber.communicate(timeout=30)[0] or "{}")
    time.sleep(0.3)
    return counts


def throughput(client: Any, tasks: int) -> float:
    """Submit ``tasks`` no-op tasks one by one, wait for all of them; tasks per second."""
    start = time.perf_counter()
    futures = [client.submit(noop, i) for i in range(tasks)]
    assert [future.result() for future in futures][-1] == tasks - 1
    return tasks / (time.perf_counter() - start)


def core_costs(tasks: int = 50_000, burst: int = 50) -> tuple[float, float, float]:
    """CPU microseconds per task: the scheduler core with events off, with events on, and decoding them."""
    from scaler.protocol.codec import decode, encode_one
    from scaler.protocol.content_id import content_id
    from scaler.protocol.messages import (
        ArgumentKind,
        ClientHeartbeat,
        Task,
        TaskArgument,
        TaskResult,
        TaskStarted,
        TaskStatus,
        WorkerHeartbeat,
    )
    from scaler.scheduler.state import SchedulerConfig, SchedulerState, Send

    def run(recording: bool) -> tuple[float, list[bytes]]:
        function = b"f" * 200
        function_id = content_id(function)
        state = SchedulerState(SchedulerConfig(per_worker_queue_size=1000))
        state.record_events(recording)
        for number in range(2):
            state.handle(b"worker|host|%d|0000" % number, WorkerHeartbeat(0.0, 0, 0.0, 0), 0.0)
        client = b"client|host|1234|abcdef12"
        state.handle(client, ClientHeartbeat(0.0), 0.0)
        argument = [TaskArgument("", ArgumentKind.INLINE, b"1")]
        frames: list[bytes] = []
        sent, now = 0, 0.0
        start = time.process_time()
        while sent < tasks:
            out = []
            for _ in range(burst):
                task = Task(sent.to_bytes(16, "big"), function_id, function if sent == 0 else b"", argument, 0)
                task.function_name = "benchmarks.bench_status_feed.noop"
                out += state.handle(client, task, now, dispatch=False)
                sent += 1
            out += state.dispatch()
            for instruction in out:
                if isinstance(instruction, Send) and isinstance(instruction.message, Task):
                    worker, message = instruction.to, instruction.message
                    state.handle(worker, TaskStarted(message.task_id, message.attempt), now, dispatch=False)
                    result = TaskResult(message.task_id, TaskStatus.SUCCESS, b"r", message.attempt)
                    state.handle(worker, result, now, dispatch=False)
            state.dispatch()
            events = state.take_events(now, now) if recording else None
            if events is not None:
                frames.append(encode_one(events))
            now += 0.001
        return (time.process_time() - start) / tasks * 1e6, frames

    off = min(run(False)[0] for _ in range(3))
    on, frames = min((run(True) for _ in range(3)), key=lambda pair: pair[0])
    start = time.process_time()
    for frame in frames:
        decode(frame)
    return off, on, (time.process_time() - start) / tasks * 1e6


def cpu_seconds(roots: list[int]) -> float:
    """CPU time (user + system) used so far by these processes and their live descendants."""
    total = 0.0
    for root in roots:
        try:
            process = psutil.Process(root)
            for member in [process, *process.children(recursive=True)]:
                times = member.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5, help="runs of each kind (alternating)")
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--quick", action="store_true", help="1,000 tasks, 2 rounds")
    parser.add_argument("--subscribe", metavar="ADDRESS", help=argparse.SUPPRESS)  # the subscriber process
    options = parser.parse_args()
    if options.subscribe:
        subscribe(options.subscribe)
        return
    if options.quick:
        options.tasks, options.rounds, options.warmup = 1_000, 2, 200

    import cloudpickle

    from scaler import Client, SchedulerClusterCombo
    from scaler.io.sockets import free_tcp_address

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    monitor = free_tcp_address()
    with (
        SchedulerClusterCombo(monitor_address=monitor, n_workers=options.workers, logging_level="WARNING") as cluster,
        Client(cluster.get_address()) as client,
    ):
        throughput(client, options.warmup)
        results: dict[str, list[float]] = {"off": [], "on": []}
        cpu: dict[str, list[float]] = {"off": [], "on": []}  # CPU microseconds per task, all processes
        roles: dict[str, list[int]] = {"scheduler": [cluster.scheduler_pid()], "workers": cluster.worker_pids()}
        by_role: dict[str, dict[str, list[float]]] = {
            kind: {role: [] for role in [*roles, "client", "subscriber"]} for kind in results
        }
        counts: collections.Counter[str] = collections.Counter()
        here = os.getpid()
        for round_number in range(options.rounds):
            order = ("off", "on") if round_number % 2 == 0 else ("on", "off")
            for kind in order:
                subscriber = attach(monitor) if kind == "on" else None
                pids = {**roles, "client": [], "subscriber": [subscriber.pid] if subscriber else []}
                start = {role: (_own_cpu(here) if role == "client" else cpu_seconds(p)) for role, p in pids.items()}
                results[kind].append(throughput(client, options.tasks))
                time.sleep(0.3)  # the subscriber decodes the last events of the run
                for role, role_pids in pids.items():
                    used = (_own_cpu(here) if role == "client" else cpu_seconds(role_pids)) - start[role]
                    by_role[kind][role].append(used / options.tasks * 1e6)
                cpu[kind].append(sum(by_role[kind][role][-1] for role in pids))
                if subscriber is not None:
                    counts.update(detach(subscriber))
                print(
                    f"  round {round_number + 1} {kind:>3}: {results[kind][-1]:>9,.0f} tasks/s, "
                    f"{cpu[kind][-1]:>6,.0f} CPU us/task",
                    flush=True,
                )
    off, on = statistics.median(results["off"]), statistics.median(results["on"])
    expected_finished = options.rounds * options.tasks  # what the "on" runs finished
    print(
        f"\n{options.workers} workers; {options.tasks:,} no-op tasks per run; {options.rounds} runs each, alternating. "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.system()}"
    )
    print(f"feed off:                      median {off:>9,.0f} tasks/s  (runs: {_runs(results['off'])})")
    print(f"feed on, subscriber decoding:  median {on:>9,.0f} tasks/s  (runs: {_runs(results['on'])})")
    print(f"ratio on / off:                {on / off:.3f}  (wall clock)")
    cpu_off, cpu_on = statistics.median(cpu["off"]), statistics.median(cpu["on"])
    print(f"CPU per task, all processes:   off {cpu_off:,.0f} us, on {cpu_on:,.0f} us (median)")
    print(f"ratio off CPU / on CPU:        {cpu_off / cpu_on:.3f}  (the throughput ratio on an otherwise idle machine)")
    for role in by_role["on"]:
        off_text, on_text = (statistics.median(by_role[kind][role]) for kind in ("off", "on"))
        print(f"  CPU us/task, {role:<10}      off {off_text:6.1f}, on {on_text:6.1f} (median)")
    core_off, core_on, decoding = core_costs()
    added = core_on - core_off + decoding
    print(
        f"feed's own CPU per task:       scheduler core {core_off:.1f} us off, {core_on:.1f} us on "
        f"(+{core_on - core_off:.1f}); a subscriber decoding {decoding:.1f} us"
    )
    print(
        f"  = {added:.1f} us of the {cpu_off:,.0f} us a task costs with the feed off: "
        f"ratio {cpu_off / (cpu_off + added):.3f} when CPU-bound"
    )
    print(
        f"subscriber: {counts.get('snapshots', 0)} snapshots, {counts.get('event_messages', 0):,} event messages, "
        f"{counts.get('task_events', 0):,} task events ({counts.get('finished_events', 0):,} finished of "
        f"{expected_finished:,} tasks), {counts.get('dropped', 0):,} events dropped by the per-turn bound"
    )
    left = {child.pid for child in psutil.Process().children(recursive=True)} - before
    psutil.wait_procs([psutil.Process(pid) for pid in left if psutil.pid_exists(pid)], timeout=10)
    if any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in left):
        print(f"processes left behind: {sorted(left)}", file=sys.stderr)
        raise SystemExit(1)


def _own_cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _runs(values: list[float]) -> str:
    return ", ".join(f"{value:,.0f}" for value in values)


if __name__ == "__main__":
    main()
