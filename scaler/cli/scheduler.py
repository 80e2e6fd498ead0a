"""``scaler_scheduler ADDRESS``: run a scheduler that clients and workers connect to."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from scaler.cli.common import parse_command, start_logging
from scaler.config.command_line import build_parser as build_config_parser
from scaler.config.compat import SCHEDULER_UNSUPPORTED
from scaler.config.scheduler import SchedulerConfig
from scaler.io.security import SchedulerKeys, check_bind
from scaler.scheduler.publisher import MonitorBindError
from scaler.scheduler.server import SchedulerServer
from scaler.utility.gc_policy import freeze_start_up_objects
from scaler.utility.malloc_policy import keep_freed_memory


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``scaler_scheduler`` (no side effects)."""
    return build_config_parser(
        SchedulerConfig,
        prog="scaler_scheduler",
        description="Run a scaler scheduler. Settings come from the flags, then the [scheduler] section of "
        "-c FILE.toml, then the defaults shown.",
        unsupported=SCHEDULER_UNSUPPORTED,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Parse flags and serve until SIGINT/SIGTERM (or an accepted client shutdown)."""
    parser = build_parser()
    config, notes = parse_command(parser, SchedulerConfig, "scheduler", argv, SCHEDULER_UNSUPPORTED)
    try:
        keys = SchedulerKeys.load(config.keys_dir, config.key_file, config.allow_list_file)
        check_bind(config.address, keys, config.insecure)
    except ValueError as error:  # InsecureBindError is one too
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    start_logging(parser, config, notes)
    server = SchedulerServer(config.address, config, config.exit_with_parent, keys, config.insecure)
    freeze_start_up_objects()  # this process is the scheduler's own: see gc_policy.py
    keep_freed_memory()  # and so is its allocator: see malloc_policy.py
    try:
        server.run()
    except MonitorBindError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    if server.state.failure is not None:  # it stopped after an internal error: its supervisor must know
        raise SystemExit(1)


if __name__ == "__main__":
    main()
