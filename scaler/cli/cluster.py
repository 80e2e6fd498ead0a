"""``scaler_cluster -n N ADDRESS``: run N workers for the scheduler at ADDRESS."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import threading
from collections.abc import Sequence

from scaler.cli.common import parse_command, start_logging, worker_kwargs
from scaler.cluster.cluster import Cluster
from scaler.config.cluster import ClusterConfig
from scaler.config.command_line import build_parser as build_config_parser
from scaler.config.compat import CLUSTER_UNSUPPORTED
from scaler.io.security import PeerKeys

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``scaler_cluster`` (no side effects)."""
    return build_config_parser(
        ClusterConfig,
        prog="scaler_cluster",
        description="Run N scaler workers on this machine. Settings come from the flags, then the [cluster] "
        "section of -c FILE.toml, then the defaults shown. Each worker logs to --logging-paths with its pid "
        "appended to file names; this command logs to the paths as given.",
        unsupported=CLUSTER_UNSUPPORTED,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Start the workers and keep them until SIGINT/SIGTERM, or until all of them exit."""
    parser = build_parser()
    config, notes = parse_command(parser, ClusterConfig, "cluster", argv, CLUSTER_UNSUPPORTED)
    try:
        PeerKeys.load("worker", **worker_kwargs(config))  # errors as usage errors
    except ValueError as error:
        parser.error(str(error))
    start_logging(parser, config, notes)
    # The workers always exit with this process; ``exit_with_parent`` is about this process's own parent.
    cluster = Cluster(config=dataclasses.replace(config, exit_with_parent=True))
    stop = threading.Event()

    def on_signal(*_: object) -> None:
        if stop.is_set():  # a second Ctrl-C or SIGTERM: do not wait for running tasks
            cluster.stop_now()
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    parent = os.getppid()
    cluster.start()
    logger.info("scaler_cluster: %d workers for %s, pids %s", cluster.n_workers, cluster.address, cluster.pids())
    while not stop.wait(0.5) and cluster.is_alive():
        if config.exit_with_parent and os.getppid() != parent:
            logger.warning("scaler_cluster: its parent exited; stopping")
            break
    logger.info("scaler_cluster: stopping %d workers", cluster.n_workers)
    cluster.shutdown()


if __name__ == "__main__":
    main()
