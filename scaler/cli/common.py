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
DEFAULT_MAX_NUMBER_OF_TASKS_WAITING = 100_000  # backpressure: bounds the scheduler's memory (about 1 KiB a task)
DEFAULT_UNSCHEDULABLE_GRACE_SECONDS = 60.0
DEFAULT_GRACE_PERIOD_SECONDS = 30.0  # what a SIGTERMed worker gives its running tasks, as Kubernetes does


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
        "--grace-period-seconds",
        type=float,
        default=DEFAULT_GRACE_PERIOD_SECONDS,
        help="on SIGTERM or Ctrl-C a worker hands its queued tasks back and gives its running tasks this long "
        "to finish; a second signal stops it at once (default 30; 0 stops at once)",
    )
    parser.add_argument(
        "--per-worker-capabilities",
        type=parse_capabilities,
        default={},
        metavar="NAME=COUNT,...",
        help="what each worker offers to tasks that ask for it, e.g. gpu=1,fpga=2 (default: nothing)",
    )


def add_peer_key_arguments(parser: argparse.ArgumentParser, role: str) -> None:
    """Key flags of a process that connects to the scheduler (``role`` is "worker" or "client")."""
    keys = parser.add_argument_group("keys (for a scheduler started with keys)")
    keys.add_argument(
        "--keys-dir",
        metavar="DIR",
        help=f"a directory made by `scaler_keygen DIR`, or a copy holding {role}.key_secret and scheduler.key",
    )
    keys.add_argument("--key-file", metavar="FILE", help=f"this {role}'s key pair (overrides --keys-dir)")
    keys.add_argument(
        "--scheduler-key-file", metavar="FILE", help="the scheduler's public key, scheduler.key (overrides --keys-dir)"
    )


def add_scheduler_key_arguments(parser: argparse.ArgumentParser) -> None:
    """Key flags of the scheduler."""
    keys = parser.add_argument_group("keys")
    keys.add_argument(
        "--keys-dir",
        metavar="DIR",
        help="use scheduler.key_secret and allowed_keys from DIR, made by `scaler_keygen DIR`: only clients and "
        "workers whose keys are on the allow-list get in, and all traffic is encrypted",
    )
    keys.add_argument("--key-file", metavar="FILE", help="the scheduler's key pair (overrides --keys-dir)")
    keys.add_argument("--allow-list-file", metavar="FILE", help="the allow-list of public keys (overrides --keys-dir)")
    keys.add_argument(
        "--insecure",
        action="store_true",
        help="serve a non-loopback address without keys: anyone who can reach it can run code on the workers",
    )
