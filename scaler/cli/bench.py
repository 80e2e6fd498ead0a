"""``scaler_bench``: scaler beside ProcessPoolExecutor and the installed peers, in one table of figures and ratios.

It starts a local scaler cluster (a scheduler and ``--workers`` workers on loopback) and, in the same
run, a ``concurrent.futures.ProcessPoolExecutor`` and whichever of loky, dask.distributed and Ray are
importable, each with the same number of worker processes; it runs the workloads of issue 14 on each,
``--rounds`` times, and prints the medians, scaler's ratio to ProcessPoolExecutor, and the goal.
``--scale-workers`` and ``--scale-tasks`` measure how throughput scales instead. Progress goes to
stderr; every process it starts is stopped before it exits.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from scaler.bench.peers import labels, peer, peer_ids
from scaler.bench.processes import descendants, leftover_processes, stop_leftovers
from scaler.bench.results import Report, render
from scaler.bench.runner import Progress, run_table
from scaler.bench.workloads import WORKLOADS, Settings, workload_ids

DEFAULTS = Settings()


def _names(allowed: Sequence[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in allowed]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"expected names from {', '.join(allowed)}, got {text!r}")
        return names

    return parse


def _counts(text: str) -> list[int]:
    try:
        counts = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected whole numbers above 0, got {text!r}")
    return counts


def _options() -> list[tuple[str, str, str | None, Callable[[str], object] | None, object, str]]:
    """Every flag: (group, flag, metavar or None for a switch, type, default, help ending in its default)."""
    workloads, peers = ",".join(workload_ids()), ",".join(peer_ids())
    quick = Settings.quick()
    return [
        (
            "the table",
            "--workers",
            "N",
            int,
            DEFAULTS.workers,
            f"worker processes for each framework (default: {DEFAULTS.workers})",
        ),
        (
            "the table",
            "--rounds",
            "N",
            int,
            None,
            "runs of each workload on each framework; the table shows the "
            f"median (default: {DEFAULTS.rounds}; {quick.rounds} with --quick)",
        ),
        (
            "the table",
            "--tasks",
            "N",
            int,
            None,
            "no-op tasks for the throughput rows and the scaling modes "
            f"(default: {DEFAULTS.tasks:,}; {quick.tasks} with --quick)",
        ),
        (
            "the table",
            "--quick",
            None,
            None,
            False,
            "small counts, for a smoke test or CI: a few seconds per workload (default: off)",
        ),
        (
            "the table",
            "--only",
            "WORKLOAD[,WORKLOAD]",
            _names(workload_ids()),
            None,
            f"run only these workloads (default: all: {workloads})",
        ),
        (
            "the table",
            "--peers",
            "PEER[,PEER]",
            _names(peer_ids()),
            None,
            f"the frameworks to run, of {peers}; scaler and ppe always run (default: every one installed)",
        ),
        (
            "scaling modes",
            "--scale-workers",
            "N[,N]",
            _counts,
            None,
            "scaler's no-op throughput and tasks per "
            "scheduler CPU-second at each worker count, e.g. 1,2,4,8; ProcessPoolExecutor beside it (default: off)",
        ),
        (
            "scaling modes",
            "--scale-tasks",
            "N[,N]",
            _counts,
            None,
            "scaler's no-op throughput at each task count, e.g. 10000,100000,1000000 (default: off)",
        ),
        (
            "scaling modes",
            "--plot",
            "FILE.png",
            None,
            None,
            "draw --scale-workers' throughput against workers to FILE.png; needs matplotlib (default: no plot)",
        ),
        (
            "output",
            "--json",
            None,
            None,
            False,
            "print the results as JSON on stdout instead of the table; progress stays on stderr (default: the table)",
        ),
    ]


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``scaler_bench`` (no side effects: nothing is imported or started)."""
    parser = argparse.ArgumentParser(
        prog="scaler_bench",
        description="Run scaler beside ProcessPoolExecutor and the installed peers (loky, dask, Ray), with the same "
        "number of worker processes, and print one table of figures, ratios and goals.",
        epilog="The scaling modes run instead of the table, unless --only is given too.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    groups: dict[str, Any] = {}
    for title, flag, metavar, kind, default, help_text in _options():
        group = groups.setdefault(title, parser.add_argument_group(title))
        if metavar is None:
            group.add_argument(flag, action="store_true", default=default, help=help_text)
        else:
            group.add_argument(flag, type=kind, default=default, metavar=metavar, help=help_text)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """The workloads' counts from the command line."""
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else DEFAULTS.rounds)
    settings = Settings.quick(args.workers, rounds) if args.quick else Settings(workers=args.workers, rounds=rounds)
    if args.tasks is not None:
        settings = dataclasses.replace(settings, tasks=args.tasks)
    return settings


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send file descriptor 1 to stderr while measuring, the children's included, so stdout holds the JSON only."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def main(argv: Sequence[str] | None = None) -> None:
    """Run what the command line asks; exit 1 if scaler or ProcessPoolExecutor failed, or a process was left."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.workers < 1 or (args.rounds is not None and args.rounds < 1) or (args.tasks is not None and args.tasks < 1):
        parser.error("--workers, --rounds and --tasks must be at least 1")
    if args.plot is not None and args.scale_workers is None:
        parser.error("--plot draws the --scale-workers figures: give --scale-workers too")
    if args.plot is not None:
        from scaler.bench.plot import require_matplotlib

        try:
            require_matplotlib()
        except RuntimeError as error:
            parser.exit(2, f"{parser.prog}: error: {error}\n")
    settings = settings_from(args)
    asked = args.peers or peer_ids()
    wanted = [p for p in peer_ids() if p in {"scaler", "ppe", *asked}]
    missing = {p: reason for p in wanted if (reason := peer(p).missing()) is not None}
    running = [p for p in wanted if p not in missing]
    table_wanted = args.only is not None or (args.scale_workers is None and args.scale_tasks is None)
    workloads = args.only or workload_ids()
    report = Report(settings, running, missing, [r for w in WORKLOADS if w.id in workloads for r in w.rows])
    if not table_wanted:
        report.rows = []
    progress = Progress()
    before = descendants()
    interrupted = False
    with stdout_to_stderr() if args.json else contextlib.nullcontext():
        try:
            if table_wanted:
                run_table(report, running, workloads, progress)
            if args.scale_workers is not None:
                from scaler.bench.scaling import scale_workers

                report.scale_workers = scale_workers(args.scale_workers, settings, progress)
            if args.scale_tasks is not None:
                from scaler.bench.scaling import scale_tasks

                report.scale_tasks = scale_tasks(args.scale_tasks, settings, progress)
        except KeyboardInterrupt:  # Ctrl-C: stop, and show what was measured until then
            interrupted = True
            progress.note("interrupted: what follows is what was measured until then")
        finally:
            report.leftover_processes = leftover_processes(before)
            if report.leftover_processes:
                stop_leftovers(before)
        if args.plot is not None and report.scale_workers:
            from scaler.bench.plot import plot_workers

            plot_workers(report.scale_workers, args.plot)
            progress.note(f"wrote {args.plot}")
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(text_report(report))
    failed = any(
        cell.error for by_peer in report.cells.values() for p, cell in by_peer.items() if p in ("scaler", "ppe")
    )
    raise SystemExit(130 if interrupted else 1 if failed or report.leftover_processes else 0)


def text_report(report: Report) -> str:
    """The table, the scaling tables and the leftover processes, as printed without ``--json``."""
    from scaler.bench.scaling import render_tasks, render_workers

    parts = []
    if report.rows:
        parts.append(render(report, labels(peer_ids())))
    if report.scale_workers:
        parts.append(
            "throughput against workers (scaler's scheduler CPU measured with psutil):\n\n"
            + render_workers(report.scale_workers)
        )
    if report.scale_tasks:
        parts.append("throughput against tasks:\n\n" + render_tasks(report.scale_tasks))
    if report.leftover_processes:
        parts.append("child processes left behind (now stopped):\n  " + "\n  ".join(report.leftover_processes))
    return "\n\n".join(parts)


if __name__ == "__main__":
    main()
