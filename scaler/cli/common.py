"""What every command does with its command line: parse it over its config file, then set up logging."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from scaler.config.command_line import Unsupported, parse_command_line
from scaler.config.loading import load_config
from scaler.config.logging_setup import LoggingSettings, setup_logging
from scaler.config.settings import Config, ConfigError

logger = logging.getLogger(__name__)


def parse_command(
    parser: argparse.ArgumentParser,
    cls: type[Config],
    section: str,
    argv: Sequence[str] | None,
    unsupported: Iterable[Unsupported] = (),
) -> tuple[Config, list[str]]:
    """The command's configuration (command line over ``-c`` file over defaults) and the INFO lines it owes.

    Exits with a usage error (status 2) naming the file, the key or the flag for anything wrong.
    """
    line = parse_command_line(parser, cls, argv, unsupported)
    try:
        config = load_config(cls, section, line.config_file, line.values)
    except ConfigError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    except ValueError as error:
        parser.error(str(error))
    if not getattr(config, "address", "x"):
        parser.error(
            f"the address is missing: give it on the command line (e.g. tcp://127.0.0.1:8516), "
            f'or as address = "..." in the [{section}] section of a -c file'
        )
    return config, line.unsupported


def start_logging(
    parser: argparse.ArgumentParser, settings: LoggingSettings, notes: Iterable[str], append_pid: bool = False
) -> None:
    """Set up logging as ``settings`` say (a usage error if a log file cannot be opened), then log ``notes``."""
    try:
        setup_logging(settings, append_pid)
    except (OSError, ValueError) as error:
        parser.exit(2, f"{parser.prog}: error: cannot set up logging: {error}\n")
    for note in notes:
        logger.info("%s", note)


def worker_kwargs(config: Any) -> dict[str, Any]:
    """The keys-loading arguments shared by the worker commands."""
    return {"keys_dir": config.keys_dir, "key_file": config.key_file, "scheduler_key_file": config.scheduler_key_file}
