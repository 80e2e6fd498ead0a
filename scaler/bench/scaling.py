"""The two scaling modes: no-op throughput against the number of workers, and against the number of tasks.

``--scale-workers``: for each worker count, scaler's no-op throughput and the CPU its scheduler
process spent (psutil), hence tasks per scheduler CPU-second: the most one scheduler core can feed,
wherever the workers are. ProcessPoolExecutor runs beside it at each count, for reference.

``--scale-tasks``: scaler's no-op throughput at each task count, in one cluster per round; the goal
is that it stays flat (the largest count within 15 % of the best).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import psutil

from scaler.bench.peers import peer
from scaler.bench.results import format_value, markdown_table
from scaler.bench.runner import Progress
from scaler.bench.workloads import Settings, timed_noops, warm_up

FLAT_WITHIN = 0.15  # issue 14: throughput from 10,000 to 1,000,000 tasks within 15 %


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def scale_workers(counts: Sequence[int], settings: Settings, progress: Progress) -> list[dict[str, Any]]:
    """One entry per worker count: medians over ``settings.rounds`` of ``settings.tasks`` no-op tasks."""
    entries = []
    for workers in counts:
        scaler_rates: list[float] = []
        per_cpu: list[float] = []
        busy: list[float] = []
        ppe_rates: list[float] = []
        for round_number in range(1, settings.rounds + 1):
            prefix = f"scale-workers {workers}, round {round_number}/{settings.rounds}:"
            progress.step(f"{prefix} scaler")
            session = peer("scaler").open(workers)
            try:
                assert session.scheduler_pid is not None
                scheduler = psutil.Process(session.scheduler_pid)
                warm_up(session, min(settings.tasks, 1_000))
                cpu_before = _cpu_seconds(scheduler)
                elapsed = timed_noops(session, settings.tasks)
                cpu = _cpu_seconds(scheduler) - cpu_before
            finally:
                session.close()
            scaler_rates.append(settings.tasks / elapsed)
            per_cpu.append(settings.tasks / cpu if cpu > 0 else float("nan"))
            busy.append(cpu / elapsed)
            progress.done(f"{scaler_rates[-1]:,.0f} tasks/s, {per_cpu[-1]:,.0f} per scheduler CPU-second")
            progress.step(f"{prefix} ProcessPoolExecutor")
            session = peer("ppe").open(workers)
            try:
                warm_up(session, min(settings.tasks, 1_000))
                ppe_rates.append(settings.tasks / timed_noops(session, settings.tasks))
            finally:
                session.close()
            progress.done(f"{ppe_rates[-1]:,.0f} tasks/s")
        entries.append(
            {
                "workers": workers,
                "tasks": settings.tasks,
                "scaler_tasks_per_s": statistics.median(scaler_rates),
                "scaler_runs": scaler_rates,
                "tasks_per_scheduler_cpu_s": statistics.median(per_cpu),
                "scheduler_cpu_share": statistics.median(busy),  # of one core, while the tasks ran
                "ppe_tasks_per_s": statistics.median(ppe_rates),
                "ppe_runs": ppe_rates,
            }
        )
    return entries


def scale_tasks(counts: Sequence[int], settings: Settings, progress: Progress) -> list[dict[str, Any]]:
    """One entry per task count: scaler's median no-op throughput over ``settings.rounds``."""
    runs: dict[int, list[float]] = {count: [] for count in counts}
    for round_number in range(1, settings.rounds + 1):
        progress.step(f"scale-tasks round {round_number}/{settings.rounds}: starting {settings.workers} workers")
        session = peer("scaler").open(settings.workers)
        progress.done("ready")
        try:
            warm_up(session, 1_000)
            for count in counts:
                progress.step(f"scale-tasks round {round_number}/{settings.rounds}: {count:,} tasks")
                runs[count].append(count / timed_noops(session, count))
                progress.done(f"{runs[count][-1]:,.0f} tasks/s")
        finally:
            session.close()
    best = max(statistics.median(values) for values in runs.values())
    return [
        {
            "tasks": count,
            "tasks_per_s": statistics.median(values),
            "runs": values,
            "of_best": statistics.median(values) / best,
        }
        for count, values in runs.items()
    ]


def render_workers(entries: list[dict[str, Any]]) -> str:
    """The worker-scaling table."""
    header = ["workers", "scaler tasks/s", "tasks per scheduler CPU-s", "scheduler CPU (cores)", "PPE tasks/s", "÷ PPE"]
    lines = [
        [
            str(entry["workers"]),
            format_value(entry["scaler_tasks_per_s"], "tasks/s"),
            format_value(entry["tasks_per_scheduler_cpu_s"], "tasks/s"),
            f"{entry['scheduler_cpu_share']:.2f}",
            format_value(entry["ppe_tasks_per_s"], "tasks/s"),
            f"{entry['scaler_tasks_per_s'] / entry['ppe_tasks_per_s']:.2f}×",
        ]
        for entry in entries
    ]
    return markdown_table(header, lines)


def render_tasks(entries: list[dict[str, Any]]) -> str:
    """The task-count scaling table, and whether it is flat within 15 %."""
    header = ["tasks", "scaler tasks/s", "of the best"]
    lines = [
        [f"{entry['tasks']:,}", format_value(entry["tasks_per_s"], "tasks/s"), f"{entry['of_best']:.0%}"]
        for entry in entries
    ]
    flat = min(entry["of_best"] for entry in entries) >= 1 - FLAT_WITHIN
    verdict = f"flat within {FLAT_WITHIN:.0%}: {'yes' if flat else 'no'}"
    return markdown_table(header, lines) + "\n\n" + verdict
