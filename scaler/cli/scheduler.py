"""``scaler_scheduler ADDRESS``: run a scheduler that clients and workers connect to."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from scaler.cli.common import (
    DEFAULT_CLIENT_TIMEOUT_SECONDS,
    DEFAULT_MAX_NUMBER_OF_TASKS_WAITING,
    DEFAULT_MAX_TASK_RETRIES,
    DEFAULT_PER_WORKER_QUEUE_SIZE,
    DEFAULT_UNSCHEDULABLE_GRACE_SECONDS,
    DEFAULT_WORKER_TIMEOUT_SECONDS,
    add_common_arguments,
    add_scheduler_key_arguments,
    setup_logging,
)
from scaler.io.security import SchedulerKeys, check_bind
from scaler.io.sockets import validate_address
from scaler.scheduler.server import SchedulerServer
from scaler.scheduler.state import SchedulerConfig


def build_parser() -> argparse.ArgumentParser:
    """The ``scaler_scheduler`` parser, built without side effects (the docs render its help)."""
    parser = argparse.ArgumentParser(description="Run a scaler scheduler.")
    add_common_arguments(parser)
    parser.add_argument("--per-worker-queue-size", type=int, default=DEFAULT_PER_WORKER_QUEUE_SIZE, help="default 1000")
    parser.add_argument(
        "--client-timeout-seconds", type=float, default=DEFAULT_CLIENT_TIMEOUT_SECONDS, help="default 60"
    )
    parser.add_argument(
        "--worker-timeout-seconds", type=float, default=DEFAULT_WORKER_TIMEOUT_SECONDS, help="default 60"
    )
    parser.add_argument("--max-task-retries", type=int, default=DEFAULT_MAX_TASK_RETRIES, help="default 3")
    parser.add_argument(
        "--unschedulable-grace-seconds",
        type=float,
        default=DEFAULT_UNSCHEDULABLE_GRACE_SECONDS,
        help="fail a task no connected worker has the capabilities for after this long (default 60)",
    )
    parser.add_argument(
        "--max-number-of-tasks-waiting",
        type=int,
        default=DEFAULT_MAX_NUMBER_OF_TASKS_WAITING,
        help="backpressure: with this many tasks queued, clients' submit() blocks until half of them have "
        "gone to workers (default 100000; 0 or less: no limit)",
    )
    protection = parser.add_mutually_exclusive_group()
    protection.add_argument(
        "--protected", dest="protected", action="store_true", default=True, help="clients cannot shut it down (default)"
    )
    protection.add_argument(
        "--no-protected", dest="protected", action="store_false", help="let clients shut the scheduler down"
    )
    add_scheduler_key_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Parse flags and serve until SIGINT/SIGTERM (or an accepted client shutdown)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.logging_level)
    try:
        validate_address(args.address)
        keys = SchedulerKeys.load(args.keys_dir, args.key_file, args.allow_list_file)
        check_bind(args.address, keys, args.insecure)
    except ValueError as error:  # InsecureBindError is one too
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    config = SchedulerConfig(
        per_worker_queue_size=args.per_worker_queue_size,
        client_timeout_seconds=args.client_timeout_seconds,
        worker_timeout_seconds=args.worker_timeout_seconds,
        max_task_retries=args.max_task_retries,
        unschedulable_grace_seconds=args.unschedulable_grace_seconds,
        max_number_of_tasks_waiting=args.max_number_of_tasks_waiting,
        protected=args.protected,
    )
    SchedulerServer(args.address, config, args.exit_with_parent, keys, args.insecure).run()


if __name__ == "__main__":
    main()
