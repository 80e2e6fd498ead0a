"""Helpers shared by the command-line entry points: logging set-up and common flags."""

from __future__ import annotations

import argparse
import logging
import sys

DEFAULT_HEARTBEAT_INTERVAL_SECONDS = 2.0
DEFAULT_CLIENT_TIMEOUT_SECONDS = 60.0
DEFAULT_WORKER_TIMEOUT_SECONDS = 60.0
DEFAULT_DEATH_TIMEOUT_SECONDS = 300.0
DEFAULT_PER_WORKER_QUEUE_SIZE = 1000
DEFAULT_MAX_TASK_RETRIES = 3
DEFAULT_UNSCHEDULABLE_GRACE_SECONDS = 60.0


def setup_logging(level: str) -> None:
    """Log to stderr with the process name and pid on every line."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        stream=sys.stderr,
        format="[%(asctime)s] %(levelname)s %(processName)s(%(process)d) %(name)s: %(message)s",
    )


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags every scaler process takes."""
    parser.add_argument("address", help="scheduler address, e.g. tcp://127.0.0.1:8516")
    parser.add_argument("--logging-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    parser.add_argument("--exit-with-parent", action="store_true", help=argparse.SUPPRESS)


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of a worker, shared by ``scaler_cluster`` and the single-worker entry point."""
    parser.add_argument(
        "--heartbeat-interval-seconds", type=float, default=DEFAULT_HEARTBEAT_INTERVAL_SECONDS, help="default 2"
    )
    parser.add_argument(
        "--death-timeout-seconds",
        type=float,
        default=DEFAULT_DEATH_TIMEOUT_SECONDS,
        help="exit after this long without a word from the scheduler (default 300)",
    )
    parser.add_argument(
        "--task-timeout-seconds",
        type=float,
        default=0.0,
        help="stop a task that runs longer than this and fail it with TaskTimeoutError (default 0: no limit)",
    )
