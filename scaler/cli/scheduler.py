"""``scaler_scheduler ADDRESS``: run a scheduler that clients and workers connect to."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from scaler.cli.common import (
    DEFAULT_CLIENT_TIMEOUT_SECONDS,
    DEFAULT_MAX_TASK_RETRIES,
    DEFAULT_PER_WORKER_QUEUE_SIZE,
    DEFAULT_UNSCHEDULABLE_GRACE_SECONDS,
    DEFAULT_WORKER_TIMEOUT_SECONDS,
    add_common_arguments,
    setup_logging,
)
from scaler.io.sockets import validate_address
from scaler.scheduler.server import SchedulerServer
from scaler.scheduler.state import SchedulerConfig


def main(argv: Sequence[str] | None = None) -> None:
    """Parse flags and serve until SIGINT/SIGTERM (or an accepted client shutdown)."""
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
    protection = parser.add_mutually_exclusive_group()
    protection.add_argument(
        "--protected", dest="protected", action="store_true", default=True, help="clients cannot shut it down (default)"
    )
    protection.add_argument(
        "--no-protected", dest="protected", action="store_false", help="let clients shut the scheduler down"
    )
    args = parser.parse_args(argv)
    try:
        validate_address(args.address)
    except ValueError as error:
        parser.error(str(error))
    setup_logging(args.logging_level)
    config = SchedulerConfig(
        per_worker_queue_size=args.per_worker_queue_size,
        client_timeout_seconds=args.client_timeout_seconds,
        worker_timeout_seconds=args.worker_timeout_seconds,
        max_task_retries=args.max_task_retries,
        unschedulable_grace_seconds=args.unschedulable_grace_seconds,
        protected=args.protected,
    )
    SchedulerServer(args.address, config, exit_with_parent=args.exit_with_parent).run()


if __name__ == "__main__":
    main()
