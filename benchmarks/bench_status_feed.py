"""What the status feed costs: no-op task throughput with the feed off, and on with a subscriber attached.

Run it from the repository root::

    python benchmarks/bench_status_feed.py                  # 2 workers, 20 pairs of 5,000-task runs
    python benchmarks/bench_status_feed.py --tasks 10000 --rounds 30
    python benchmarks/bench_status_feed.py --quick          # small counts, for a smoke test

One local cluster with ``--workers`` workers and its feed bound runs every round, and one
subscriber process lives through all of them: a process that reads everything the feed publishes
and decodes it into the typed messages, as ``scaler_top`` and ``scaler_ui`` do. For an "on" run it
subscribes (and the scheduler records events for it); for an "off" run it closes its socket and
sleeps, so nobody subscribes and the scheduler records nothing, as with
``monitor_address="none"``. Keeping the process alive spares each "on" run an interpreter's
start-up, which is not the feed's cost.

The runs come in pairs, one of each kind back to back (off then on, then on then off, ...), and
the headline is the median over the pairs of on / off: on this shared 2-core VM a single run's
throughput swings by 20 % or more with the machine's state, and a pair shares that state where two
medians over the whole run do not. The report also gives a 95 % bootstrap interval of the pairs'
geometric mean, the ratio of the two kinds' medians, and each run. It checks that the subscriber
saw an event for every task of the "on" runs, so they did pay for the events.

Each run also adds up the CPU time its processes used (scheduler, worker agents, processors, this
process's client, and for "on" the subscriber): CPU per task by role, and the ratio of the pairs
by CPU (the throughput ratio on a machine the benchmark had to itself).

Last, it measures the feed's own CPU cost per task without sockets or other processes: the
scheduler core pushing tasks through submit, dispatch, start and result with events off and on
(taking and encoding them once per turn of 50 tasks), and a subscriber decoding those events; set
against the end-to-end CPU per task, that is the feed's share in a CPU-bound run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import queue
import random
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import psutil


def noop(x: int) -> int:
    """The task whose cost is pure framework overhead."""
    return x


def subscribe(address: str) -> None:
    """The subscriber process, driven by lines on its stdin; see the module docstring.

    ``on`` opens the feed and answers ``ready`` once a snapshot arrived (the scheduler records
    events from that same tick on); ``off`` closes it and answers ``off``; end of input ends it,
    and it prints what it saw as JSON.
    """
    from scaler.monitor.feed import StatusFeed
    from scaler.protocol.messages import StatusEvents, StatusSnapshot, TaskEventKind

    commands: queue.Queue[str] = queue.Queue()

    def read_commands() -> None:
        for line in sys.stdin:
            commands.put(line.strip())
        commands.put("quit")

    threading.Thread(target=read_commands, daemon=True).start()
    counts = {"snapshots": 0, "event_messages": 0, "task_events": 0, "ended_events": 0, "dropped": 0}
    ended = (TaskEventKind.FINISHED, TaskEventKind.FAILED, TaskEventKind.CANCELLED)
    feed: StatusFeed | None = None
    waiting = False
    while True:
        try:
            command = commands.get(block=feed is None)
        except queue.Empty:
            command = ""
        if command == "on" and feed is None:
            feed, waiting = StatusFeed(address), True
        elif command in ("off", "quit") and feed is not None:
            feed.close()
            feed = None
            print("off", flush=True)
        if command == "quit":
            break
        if feed is None:
            continue
        for message in feed.receive(0.05):
            if isinstance(message, StatusSnapshot):
                if waiting:
                    print("ready", flush=True)
                    waiting = False
                counts["snapshots"] += 1
            elif isinstance(message, StatusEvents):
                counts["event_messages"] += 1
                counts["task_events"] += len(message.tasks)
                counts["ended_events"] += sum(event.kind in ended for event in message.tasks)
                counts["dropped"] += message.dropped
    print(json.dumps(counts), flush=True)


class Subscriber:
    """The subscriber process, seen from the benchmark."""

    def __init__(self, monitor: str) -> None:
        command = [sys.executable, __file__, "--subscribe", monitor]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def _say(self, command: str, answer: str) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        if self.process.stdout.readline().strip() != answer:
            self.process.kill()
            raise SystemExit(f"the subscriber did not answer {command!r} with {answer!r}")

    def attach(self) -> None:
        """Subscribe, and wait until the feed is heard: the scheduler records events from then on."""
        self._say("on", "ready")

    def detach(self) -> None:
        """Unsubscribe; the scheduler stops recording at its next tick (0.1 s)."""
        self._say("off", "off")

    def close(self) -> dict[str, int]:
        """End the process; what it saw."""
        counts: dict[str, int] = json.loads((self.process.communicate(timeout=60)[0].splitlines() or ["{}"])[-1])
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

    offs, ons = [], []
    for _ in range(5):  # interleaved, so that warming up and the machine's drift hit both alike
        offs.append(run(False))
        ons.append(run(True))
    off = min(cost for cost, _ in offs)
    on, frames = min(ons, key=lambda pair: pair[0])
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
    parser.add_argument("--tasks", type=int, default=5_000, help="no-op tasks per run")
    parser.add_argument("--rounds", type=int, default=20, help="pairs of runs (one off, one on)")
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--quick", action="store_true", help="1,000 tasks, 2 pairs")
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
        subscriber = Subscriber(monitor)
        throughput(client, options.warmup)
        results: dict[str, list[float]] = {"off": [], "on": []}
        cpu: dict[str, list[float]] = {"off": [], "on": []}  # CPU microseconds per task, all processes
        roles: dict[str, list[int]] = {
            "scheduler": [cluster.scheduler_pid()],
            "workers": cluster.worker_pids(),
            "subscriber": [subscriber.process.pid],
        }
        by_role: dict[str, dict[str, list[float]]] = {
            kind: {role: [] for role in [*roles, "client"]} for kind in results
        }
        here = os.getpid()
        for round_number in range(options.rounds):
            order = ("off", "on") if round_number % 2 == 0 else ("on", "off")
            for kind in order:
                if kind == "on":
                    subscriber.attach()
                # The same pause before every run, whatever came before it: a run after a pause
                # starts on cold caches, and if only one kind had pauses it would pay for them all.
                # It also covers the scheduler's next tick, when it stops recording after a detach.
                time.sleep(0.3)
                start = {role: cpu_seconds(pids) for role, pids in roles.items()} | {"client": _own_cpu(here)}
                results[kind].append(throughput(client, options.tasks))
                if kind == "on":
                    time.sleep(0.1)  # the subscriber decodes the last events of the run
                for role, used in (
                    {role: cpu_seconds(pids) for role, pids in roles.items()} | {"client": _own_cpu(here)}
                ).items():
                    by_role[kind][role].append((used - start[role]) / options.tasks * 1e6)
                cpu[kind].append(sum(values[-1] for values in by_role[kind].values()))
                if kind == "on":
                    subscriber.detach()
            pair = {kind: f"{results[kind][-1]:>7,.0f} tasks/s, {cpu[kind][-1]:>4,.0f} CPU us/task" for kind in cpu}
            print(
                f"  pair {round_number + 1:>2}: off {pair['off']};  on {pair['on']};  "
                f"on/off {results['on'][-1] / results['off'][-1]:.3f}",
                flush=True,
            )
        counts = subscriber.close()
    report(options, results, cpu, by_role, counts)
    left = {child.pid for child in psutil.Process().children(recursive=True)} - before
    psutil.wait_procs([psutil.Process(pid) for pid in left if psutil.pid_exists(pid)], timeout=10)
    if any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE for pid in left):
        print(f"processes left behind: {sorted(left)}", file=sys.stderr)
        raise SystemExit(1)


def paired(on: list[float], off: list[float]) -> tuple[float, float, float]:
    """The median of the pairs' on / off ratios, and a 95 % bootstrap interval of their geometric mean."""
    logs = [math.log(a / b) for a, b in zip(on, off, strict=True)]
    draw = random.Random(0)
    means = sorted(statistics.fmean(draw.choices(logs, k=len(logs))) for _ in range(2_000))
    low, high = means[int(0.025 * len(means))], means[int(0.975 * len(means)) - 1]
    return statistics.median(math.exp(x) for x in logs), math.exp(low), math.exp(high)


def report(
    options: argparse.Namespace,
    results: dict[str, list[float]],
    cpu: dict[str, list[float]],
    by_role: dict[str, dict[str, list[float]]],
    counts: dict[str, int],
) -> None:
    """Print the figures; see the module docstring."""
    off, on = statistics.median(results["off"]), statistics.median(results["on"])
    print(
        f"\n{options.workers} workers; {options.tasks:,} no-op tasks per run; {options.rounds} pairs of runs. "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.system()}"
    )
    print(f"feed off:                      median {off:>9,.0f} tasks/s  (runs: {_runs(results['off'])})")
    print(f"feed on, subscriber decoding:  median {on:>9,.0f} tasks/s  (runs: {_runs(results['on'])})")
    ratio, low, high = paired(results["on"], results["off"])
    print(f"ratio on / off, pairs:         {ratio:.3f} median (geometric mean 95 % interval {low:.3f} to {high:.3f})")
    print(f"ratio on / off, medians:       {on / off:.3f}  (wall clock)")
    cpu_off, cpu_on = statistics.median(cpu["off"]), statistics.median(cpu["on"])
    cpu_ratio, cpu_low, cpu_high = paired(cpu["off"], cpu["on"])
    print(f"CPU per task, all processes:   off {cpu_off:,.0f} us, on {cpu_on:,.0f} us (median)")
    print(
        f"ratio off CPU / on CPU, pairs: {cpu_ratio:.3f} median (interval {cpu_low:.3f} to {cpu_high:.3f}): "
        f"the throughput ratio on an otherwise idle machine"
    )
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
    expected = options.rounds * options.tasks  # what the "on" runs ended
    print(
        f"subscriber: {counts.get('snapshots', 0)} snapshots, {counts.get('event_messages', 0):,} event messages, "
        f"{counts.get('task_events', 0):,} task events ({counts.get('ended_events', 0):,} ended of "
        f"{expected:,} tasks), {counts.get('dropped', 0):,} events dropped by the per-turn bound"
    )


def _own_cpu(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _runs(values: list[float]) -> str:
    return ", ".join(f"{value:,.0f}" for value in values)


if __name__ == "__main__":
    main()
