"""What the status feed costs: no-op task throughput with the feed off, and on with a subscriber attached.

Run it from the repository root::

    python benchmarks/bench_status_feed.py                  # 2 workers, 10,000 tasks, 5 rounds
    python benchmarks/bench_status_feed.py --tasks 20000 --rounds 7
    python benchmarks/bench_status_feed.py --quick          # small counts, for a smoke test

Two local clusters run side by side, each with ``--workers`` workers: one with the feed off
(``monitor_address="none"``), one with the feed on and a subscriber attached. The subscriber is a
separate process that reads everything the feed publishes and decodes it into the typed messages,
as ``scaler_top`` and ``scaler_ui`` do. Runs alternate between the two clusters (off, on, on, off,
...) so that drift in the machine's load hits both alike; the report gives each run, the medians,
and the ratio on / off of the median throughputs (the issue's goal: 0.97 or more). It also checks
that the subscriber saw an event for every task, so the "on" runs did pay for the events.
"""

from __future__ import annotations

import argparse
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


def throughput(client: Any, tasks: int) -> float:
    """Submit ``tasks`` no-op tasks one by one, wait for all of them; tasks per second."""
    start = time.perf_counter()
    futures = [client.submit(noop, i) for i in range(tasks)]
    assert [future.result() for future in futures][-1] == tasks - 1
    return tasks / (time.perf_counter() - start)


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
    common = {"n_workers": options.workers, "logging_level": "WARNING"}
    with (
        SchedulerClusterCombo(monitor_address="none", **common) as off_cluster,
        SchedulerClusterCombo(monitor_address=monitor, **common) as on_cluster,
        Client(off_cluster.get_address()) as off_client,
        Client(on_cluster.get_address()) as on_client,
    ):
        subscriber = subprocess.Popen(
            [sys.executable, __file__, "--subscribe", monitor], stdout=subprocess.PIPE, text=True
        )
        assert subscriber.stdout is not None
        if subscriber.stdout.readline().strip() != "ready":
            subscriber.kill()
            raise SystemExit("the subscriber never heard the feed")
        for client in (off_client, on_client):
            throughput(client, options.warmup)
        results: dict[str, list[float]] = {"off": [], "on": []}
        clients = {"off": off_client, "on": on_client}
        for round_number in range(options.rounds):
            order = ("off", "on") if round_number % 2 == 0 else ("on", "off")
            for kind in order:
                results[kind].append(throughput(clients[kind], options.tasks))
                print(f"  round {round_number + 1} {kind:>3}: {results[kind][-1]:>9,.0f} tasks/s", flush=True)
        time.sleep(1.5)  # the last events and a snapshot reach the subscriber
        subscriber.terminate()
        counts: dict[str, Any] = json.loads(subscriber.communicate(timeout=30)[0] or "{}")
    off, on = statistics.median(results["off"]), statistics.median(results["on"])
    expected_finished = options.warmup + options.rounds * options.tasks
    print(
        f"\n{options.workers} workers; {options.tasks:,} no-op tasks per run; {options.rounds} runs each, alternating. "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.system()}"
    )
    print(f"feed off:                      median {off:>9,.0f} tasks/s  (runs: {_runs(results['off'])})")
    print(f"feed on, subscriber decoding:  median {on:>9,.0f} tasks/s  (runs: {_runs(results['on'])})")
    print(f"ratio on / off:                {on / off:.3f}")
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


def _runs(values: list[float]) -> str:
    return ", ".join(f"{value:,.0f}" for value in values)


if __name__ == "__main__":
    main()
