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


def parse_capabilities(text: str) -> dict[str, int]:
    """Parse ``gpu=1,fpga=2`` (a bare ``gpu`` means ``gpu=1``) into ``{"gpu": 1, "fpga": 2}``."""
    capabilities: dict[str, int] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, equals, count = item.partition("=")
        name = name.strip()
        if not name:
            raise argparse.ArgumentTypeError(f"capability {item!r} has no name")
        try:
            capabilities[name] = int(count) if equals else 1
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"capability {name!r} needs a whole number, got {count.strip()!r}"
            ) from None
        if capabilities[name] < 0:
            raise argparse.ArgumentTypeError(f"capability {name!r} cannot be negative")
    return capabilities


def format_capabilities(capabilities: dict[str, int]) -> str:
    """The inverse of ``parse_capabilities``."""
    return ",".join(f"{name}={count}" for name, count in capabilities.items())


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
        help="stop a task that runs longer than this and fail it with TaskTimeoutError (default 0: no limit); "
        "a task's own timeout overrides it",
    )
    parser.add_argument(
        "--per-worker-capabilities",
        type=parse_capabilities,
        default={},
        metavar="NAME=COUNT,...",
        help="what each worker offers to tasks that ask for it, e.g. gpu=1,fpga=2 (default: nothing)",
    )
