"""Running the table: every round, every framework, every workload asked for; progress on stderr.

Frameworks take turns within each round (scaler, ProcessPoolExecutor, ..., then again), so the
machine's changing load falls on all of them alike, and each round starts every framework afresh.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TextIO

from scaler.bench.peers import Peer, Session, peer
from scaler.bench.results import Report, format_value, row
from scaler.bench.workloads import WORKLOADS, Settings, Workload


class Progress:
    """One line on stderr per step: what starts, then its figure or its error."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.started = time.monotonic()

    def step(self, text: str) -> None:
        """Say that ``text`` starts (the line is finished by ``done``)."""
        print(f"[{time.monotonic() - self.started:6.1f}s] {text} ...", end="", file=self.stream, flush=True)

    def done(self, text: str) -> None:
        """Finish the current line."""
        print(f" {text}", file=self.stream, flush=True)

    def note(self, text: str) -> None:
        """A line of its own."""
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", file=self.stream, flush=True)


def _describe(figures: dict[str, float]) -> str:
    return ", ".join(f"{format_value(value, row(row_id).unit)} {row(row_id).unit}" for row_id, value in figures.items())


def _run_one(
    report: Report,
    workload: Workload,
    target: Peer | Session,
    peer_id: str,
    settings: Settings,
    progress: Progress,
    prefix: str,
) -> None:
    progress.step(f"{prefix} {workload.id}")
    try:
        figures = workload.run(target, settings)
    except Exception as error:  # reported in the table; the other workloads and frameworks go on
        for row_id in workload.rows:
            report.cell(row_id, peer_id).error = f"{type(error).__name__}: {error}"
        progress.done(f"failed: {type(error).__name__}: {error}")
        return
    for row_id, value in figures.items():
        report.cell(row_id, peer_id).runs.append(value)
    progress.done(_describe(figures))


def run_table(report: Report, peer_ids: Sequence[str], workload_ids: Sequence[str], progress: Progress) -> None:
    """Fill ``report`` with ``settings.rounds`` rounds of each workload on each framework."""
    settings = report.settings
    chosen = [workload for workload in WORKLOADS if workload.id in workload_ids]
    for round_number in range(1, settings.rounds + 1):
        for peer_id in peer_ids:
            entry = peer(peer_id)
            prefix = f"round {round_number}/{settings.rounds}: {entry.label}:"
            mine = [w for w in chosen if w.peers is None or peer_id in w.peers]
            for workload in (w for w in mine if w.fresh):
                _run_one(report, workload, entry, peer_id, settings, progress, prefix)
            in_session = [w for w in mine if not w.fresh and (entry.graphs or not w.graphs)]
            if not in_session:
                continue
            progress.step(f"{prefix} starting {settings.workers} workers")
            try:
                session = entry.open(settings.workers)
            except Exception as error:
                progress.done(f"failed: {type(error).__name__}: {error}")
                for workload in in_session:
                    for row_id in workload.rows:
                        report.cell(row_id, peer_id).error = f"could not start: {type(error).__name__}: {error}"
                continue
            progress.done("ready")
            try:
                for workload in in_session:
                    _run_one(report, workload, session, peer_id, settings, progress, prefix)
            finally:
                session.close()
