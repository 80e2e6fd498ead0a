"""One worker (an agent and its processor): ``python -m scaler.cli.worker ADDRESS``.

``scaler_cluster`` starts N of these; use that command rather than this module directly.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from scaler.cli.common import add_common_arguments, add_peer_key_arguments, add_worker_arguments, setup_logging
from scaler.io.security import PeerKeys
from scaler.worker.agent import WorkerAgent


def main(argv: Sequence[str] | None = None) -> None:
    """Run one worker until it is stopped or loses its scheduler."""
    parser = argparse.ArgumentParser(description="Run one scaler worker.")
    add_common_arguments(parser)
    add_worker_arguments(parser)
    add_peer_key_arguments(parser, "worker")
    args = parser.parse_args(argv)
    setup_logging(args.logging_level)
    try:
        keys = PeerKeys.load("worker", args.keys_dir, args.key_file, args.scheduler_key_file)
    except ValueError as error:
        parser.error(str(error))
    agent = WorkerAgent(
        args.address,
        heartbeat_interval_seconds=args.heartbeat_interval_seconds,
        death_timeout_seconds=args.death_timeout_seconds,
        task_timeout_seconds=args.task_timeout_seconds,
        exit_with_parent=args.exit_with_parent,
        capabilities=args.per_worker_capabilities,
        keys=keys,
        grace_period_seconds=args.grace_period_seconds,
    )
    agent.run()
    if agent.refused is not None:
        raise SystemExit(1)  # refused: the log says why, and the status tells scripts and supervisors


if __name__ == "__main__":
    main()
