"""One worker (an agent and its processors): ``python -m scaler.cli.worker ADDRESS``.

``scaler_cluster`` starts N of these; use that command rather than this module directly. A
worker appends its process id to each log file's name (``-lp w.log`` writes ``w.log-PID``).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from scaler.cli.common import parse_command, start_logging, worker_kwargs
from scaler.config.command_line import build_parser as build_config_parser
from scaler.config.worker import WorkerConfig
from scaler.io.output_limits import OutputLimits
from scaler.io.security import PeerKeys
from scaler.utility.malloc_policy import keep_freed_memory
from scaler.worker.agent import WorkerAgent


def build_parser() -> argparse.ArgumentParser:
    """The parser of one worker (no side effects)."""
    return build_config_parser(
        WorkerConfig,
        prog="python -m scaler.cli.worker",
        description="Run one scaler worker (scaler_cluster runs N of them). Settings come from the flags, then "
        "the [worker] section of -c FILE.toml, then the defaults shown.",
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run one worker until it is stopped or loses its scheduler."""
    parser = build_parser()
    config, notes = parse_command(parser, WorkerConfig, "worker", argv)
    try:
        keys = PeerKeys.load("worker", **worker_kwargs(config))
    except ValueError as error:
        parser.error(str(error))
    start_logging(parser, config, notes, append_pid=True)
    keep_freed_memory()  # the worker agent is scaler's own process: see malloc_policy.py
    agent = WorkerAgent(
        config.address,
        heartbeat_interval_seconds=config.heartbeat_interval_seconds,
        death_timeout_seconds=config.death_timeout_seconds,
        task_timeout_seconds=config.task_timeout_seconds,
        exit_with_parent=config.exit_with_parent,
        capabilities=config.per_worker_capabilities,
        keys=keys,
        grace_period_seconds=config.grace_period_seconds,
        name=config.name,
        output_limits=OutputLimits(
            processor_bytes_per_second=config.output_bytes_per_second_per_processor,
            worker_bytes_per_second=config.output_bytes_per_second,
        ),
    )
    agent.run()
    if agent.refused is not None:
        raise SystemExit(1)  # refused: the log says why, and the status tells scripts and supervisors


if __name__ == "__main__":
    main()
