"""``scaler_cluster -n N ADDRESS``: run N workers for the scheduler at ADDRESS."""

from __future__ import annotations

import argparse
import os
import signal
import threading
from collections.abc import Sequence

from scaler.cli.common import add_common_arguments, add_peer_key_arguments, add_worker_arguments, setup_logging
from scaler.cluster.cluster import Cluster
from scaler.io.security import PeerKeys


def build_parser() -> argparse.ArgumentParser:
    """The ``scaler_cluster`` parser, built without side effects (the docs render its help)."""
    parser = argparse.ArgumentParser(description="Run N scaler workers.")
    add_common_arguments(parser)
    add_worker_arguments(parser)
    parser.add_argument("-n", "--num-of-workers", dest="n_workers", type=int, default=os.cpu_count() or 1)
    add_peer_key_arguments(parser, "worker")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Start the workers and keep them until SIGINT/SIGTERM, or until all of them exit."""
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.logging_level)
    try:
        PeerKeys.load("worker", args.keys_dir, args.key_file, args.scheduler_key_file)  # errors as usage errors
    except ValueError as error:
        parser.error(str(error))
    cluster = Cluster(
        args.address,
        args.n_workers,
        heartbeat_interval_seconds=args.heartbeat_interval_seconds,
        death_timeout_seconds=args.death_timeout_seconds,
        task_timeout_seconds=args.task_timeout_seconds,
        logging_level=args.logging_level,
        exit_with_parent=True,
        per_worker_capabilities=args.per_worker_capabilities,
        keys_dir=args.keys_dir,
        key_file=args.key_file,
        scheduler_key_file=args.scheduler_key_file,
        grace_period_seconds=args.grace_period_seconds,
    )
    stop = threading.Event()

    def on_signal(*_: object) -> None:
        if stop.is_set():  # a second Ctrl-C or SIGTERM: do not wait for running tasks
            cluster.stop_now()
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    cluster.start()
    while not stop.wait(0.5) and cluster.is_alive():
        pass
    cluster.shutdown()


if __name__ == "__main__":
    main()
