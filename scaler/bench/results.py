"""The rows of the table, their goals, and the report: one table of figures and ratios, or JSON.

Every ratio is scaler's figure divided by the reference's (ProcessPoolExecutor's, or Ray's for the
graph), whichever way the row's figure is better: 2× is twice the throughput, or twice the time.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
from dataclasses import dataclass, field
from typing import Any

from scaler.bench.workloads import Settings

JSON_VERSION = 1
REFERENCE = "ppe"  # the bar: scaler against the standard library's process pool


@dataclass(frozen=True)
class Goal:
    """A row's target, from issue 14.

    ``kind``: ``ratio_at_least`` / ``ratio_at_most`` (scaler ÷ ``against``), ``at_most`` (scaler's
    median), ``every_run_at_most`` (each of scaler's runs), ``not_below`` (scaler's median against
    its own median on row ``against``).
    """

    kind: str
    bound: float
    against: str = REFERENCE


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    id: str
    title: str
    unit: str
    goal_text: str
    goals: tuple[Goal, ...]


ROWS: tuple[Row, ...] = (
    Row("noop", "no-op tasks/s ({tasks:,} tasks, submit then wait)", "tasks/s", "≥ 2×", (Goal("ratio_at_least", 2),)),
    Row(
        "map",
        "starmap of {tasks:,} no-ops, tasks/s",
        "tasks/s",
        "≥ 2×, and never below a submit loop",
        (Goal("ratio_at_least", 2), Goal("not_below", 1, "noop")),
    ),
    Row("latency_p50", "submit → result latency, p50", "ms", "≤ 2×", (Goal("ratio_at_most", 2),)),
    Row("latency_p99", "submit → result latency, p99", "ms", "", ()),
    Row("args_1mib", "1 MiB arguments, MiB/s", "MiB/s", "≥ 1×", (Goal("ratio_at_least", 1),)),
    Row("results_1mib", "1 MiB results, MiB/s", "MiB/s", "≥ 1×", (Goal("ratio_at_least", 1),)),
    Row(
        "memory_rss",
        "client memory holding {memory_futures:,} futures, MiB (RSS growth)",
        "MiB",
        "≤ 1×",
        (Goal("ratio_at_most", 1),),
    ),
    Row(
        "memory_traced",
        "client memory holding {memory_futures:,} futures, MiB (tracemalloc)",
        "MiB",
        "≤ 1×",
        (Goal("ratio_at_most", 1),),
    ),
    Row("startup", "start-up, Client() / executor to the first result, s", "s", "≤ 0.25 s", (Goal("at_most", 0.25),)),
    Row(
        "cancel",
        "cancel {cancels} one-second tasks one by one until all ended, s",
        "s",
        "≤ 0.1 s in every run",
        (Goal("every_run_at_most", 0.1),),
    ),
    Row(
        "graph",
        "{graph_nodes:,}-node task graph, tasks/s",
        "tasks/s",
        "≥ 5× Ray",
        (Goal("ratio_at_least", 5, "ray"),),
    ),
)


def row(row_id: str) -> Row:
    """The row called ``row_id``."""
    return next(entry for entry in ROWS if entry.id == row_id)


@dataclass
class Cell:
    """One framework's figures on one row: every round's, or why there are none."""

    runs: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def median(self) -> float | None:
        """The median of the rounds, None without a figure."""
        return statistics.median(self.runs) if self.runs else None


@dataclass
class Report:
    """Everything one ``scaler_bench`` run measured."""

    settings: Settings
    peers: list[str]  # the frameworks that ran, scaler first
    missing: dict[str, str]  # frameworks asked for but not importable: why
    rows: list[str]  # the row ids measured, in table order
    cells: dict[str, dict[str, Cell]] = field(default_factory=dict)  # row -> peer -> cell
    scale_workers: list[dict[str, Any]] = field(default_factory=list)
    scale_tasks: list[dict[str, Any]] = field(default_factory=list)
    leftover_processes: list[str] = field(default_factory=list)

    def cell(self, row_id: str, peer_id: str) -> Cell:
        """The cell of ``row_id`` and ``peer_id``, created empty on first use."""
        return self.cells.setdefault(row_id, {}).setdefault(peer_id, Cell())

    def median(self, row_id: str, peer_id: str) -> float | None:
        """A cell's median, None if the cell is empty or missing."""
        cell = self.cells.get(row_id, {}).get(peer_id)
        return cell.median if cell is not None else None

    def ratio(self, entry: Row) -> tuple[float | None, str]:
        """scaler ÷ the row's reference framework, and that framework's id."""
        against = next((goal.against for goal in entry.goals if goal.kind.startswith("ratio")), REFERENCE)
        mine, theirs = self.median(entry.id, "scaler"), self.median(entry.id, against)
        if mine is None or theirs is None or theirs == 0:
            return None, against
        return mine / theirs, against

    def verdict(self, entry: Row) -> tuple[bool | None, str]:
        """Whether scaler meets the row's goal (None: cannot tell), and a note when it cannot tell."""
        if not entry.goals:
            return None, ""
        mine = self.cells.get(entry.id, {}).get("scaler")
        if mine is None or mine.median is None:
            return None, "no scaler figure"
        results = []
        for goal in entry.goals:
            if goal.kind.startswith("ratio"):
                ratio, against = self.ratio(entry)
                if ratio is None:
                    reason = self.missing.get(against) or f"no {against} figure"
                    return None, reason.split(" (")[0]
                results.append(ratio >= goal.bound if goal.kind == "ratio_at_least" else ratio <= goal.bound)
            elif goal.kind == "at_most":
                results.append(mine.median <= goal.bound)
            elif goal.kind == "every_run_at_most":
                results.append(max(mine.runs) <= goal.bound)
            elif goal.kind == "not_below":
                other = self.median(goal.against, "scaler")
                if other is not None:
                    results.append(mine.median >= other)
        return all(results), ""

    def to_json(self) -> dict[str, Any]:
        """The report as plain data: ``rows`` has one entry per row with every framework's figures."""
        rows = []
        for row_id in self.rows:
            entry = row(row_id)
            ratio, against = self.ratio(entry)
            passed, note = self.verdict(entry)
            values = {}
            for peer_id in self.peers:
                cell = self.cells.get(row_id, {}).get(peer_id)
                if cell is None:
                    continue
                values[peer_id] = {"median": cell.median, "runs": cell.runs, "error": cell.error}
            rows.append(
                {
                    "id": row_id,
                    "title": entry.title.format(**title_values(self.settings)),
                    "unit": entry.unit,
                    "values": values,
                    "ratio": ratio,
                    "ratio_against": against,
                    "goal": entry.goal_text,
                    "passed": passed,
                    "note": note,
                }
            )
        return {
            "version": JSON_VERSION,
            "machine": machine(),
            "settings": self.settings.as_dict(),
            "peers": self.peers,
            "missing": self.missing,
            "rows": rows,
            "scale_workers": self.scale_workers,
            "scale_tasks": self.scale_tasks,
            "leftover_processes": self.leftover_processes,
        }


def title_values(settings: Settings) -> dict[str, Any]:
    """What row titles may name."""
    return {**settings.as_dict(), "graph_nodes": 2**settings.graph_depth - 1}


def machine() -> dict[str, Any]:
    """Where it ran: Python, CPUs, the system, and the load average at the end."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "system": platform.system(),
        "load_average": [round(value, 2) for value in load],
    }


# -- the table ---------------------------------------------------------------------------------------


def format_value(value: float | None, unit: str) -> str:
    """A figure as the table shows it."""
    if value is None or value != value:
        return "–"
    if unit in ("tasks/s", "MiB/s"):
        return f"{value:,.0f}"
    if unit == "ms":
        return f"{value:.3f}" if value < 10 else f"{value:,.1f}"
    if unit == "MiB":
        return f"{value:.1f}"
    return f"{value:.3f}" if value < 1 else f"{value:.2f}"


def _cell_text(cell: Cell | None, unit: str, with_range: bool) -> str:
    if cell is None:
        return "n/a"
    if cell.error and not cell.runs:
        return "error"
    text = format_value(cell.median, unit)
    if with_range and len(cell.runs) > 1:
        text += f" ({format_value(min(cell.runs), unit)}–{format_value(max(cell.runs), unit)})"
    return text


def markdown_table(header: list[str], lines: list[list[str]]) -> str:
    """A Markdown table, its columns padded so that it reads as well in a terminal."""
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

    def render(cells: list[str]) -> str:
        return "| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths)) + " |"  # noqa: B905

    return "\n".join([render(header), "|" + "|".join("-" * (width + 2) for width in widths) + "|", *map(render, lines)])


def render(report: Report, labels: dict[str, str]) -> str:
    """The table of figures, ratios and goals, with notes on what did not run."""
    settings = report.settings
    header = ["workload", *(labels[peer_id] for peer_id in report.peers), "scaler ÷ PPE", "goal", "met"]
    lines = []
    for row_id in report.rows:
        entry = row(row_id)
        cells = [_cell_text(report.cells.get(row_id, {}).get(p), entry.unit, p == "scaler") for p in report.peers]
        ratio, against = report.ratio(entry)
        ratio_text = (
            "–"
            if ratio is None
            else f"{ratio:.2f}×" + ("" if against == REFERENCE else f" {labels.get(against, against)}")
        )
        passed, note = report.verdict(entry)
        met = note if passed is None else ("yes" if passed else "no")
        lines.append([entry.title.format(**title_values(settings)), *cells, ratio_text, entry.goal_text, met])
    text = [
        f"{settings.workers} workers each; median of {settings.rounds} round(s) (scaler: median (min–max)). "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.system()}.",
        "",
        markdown_table(header, lines),
    ]
    errors = [
        f"- {labels.get(peer_id, peer_id)}, {row_id}: {cell.error}"
        for row_id, by_peer in report.cells.items()
        for peer_id, cell in by_peer.items()
        if cell.error
    ]
    if errors:
        text += ["", "errors:", *errors]
    if report.missing:
        text += ["", "not run: " + "; ".join(report.missing.values())]
    return "\n".join(text)
