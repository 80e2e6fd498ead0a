"""``scaler_top MONITOR_ADDRESS``: a live view of a scheduler's workers, clients and tasks, in the terminal.

It reads the scheduler's status feed (``scaler.monitor.feed``), so it needs the monitor address: the
scheduler's port + 2 unless the scheduler was given another. The screen is a textual app
(``pip install 'scaler[top]'``); ``q`` or Ctrl-C leaves it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from scaler.cli.common import parse_command
from scaler.config.command_line import build_parser as build_config_parser
from scaler.config.top import TopConfig
from scaler.io.keys import CLIENT, key_pair_path
from scaler.io.security import PeerKeys
from scaler.monitor.top_model import SORT_KEYS

MONITOR_ROLE = "monitor"
INSTALL_HINT = "scaler_top needs the textual package: pip install 'scaler[top]'"


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``scaler_top`` (no side effects; textual is not imported)."""
    keys = ", ".join(f"{entry.key} {entry.name}" for entry in SORT_KEYS)
    return build_config_parser(
        TopConfig,
        prog="scaler_top",
        description="Watch a scaler scheduler live: its figures, its clients and its workers. Settings come from "
        "the flags, then the [top] section of -c FILE.toml, then the defaults shown.",
        epilog=f"Keys: q or Ctrl-C quits; sort the workers by {keys} (again: the other way).",
    )


def load_keys(config: TopConfig) -> PeerKeys | None:
    """The monitor's keys: ``monitor.key_secret`` from ``--keys-dir``, or its ``client.key_secret`` if it has none."""
    key_file = config.key_file
    if key_file is None and config.keys_dir is not None:
        keys_dir = os.path.expanduser(config.keys_dir)
        if not key_pair_path(keys_dir, MONITOR_ROLE).exists() and key_pair_path(keys_dir, CLIENT).exists():
            key_file = os.fspath(key_pair_path(keys_dir, CLIENT))
    return PeerKeys.load(MONITOR_ROLE, config.keys_dir, key_file, config.scheduler_key_file)


def main(argv: Sequence[str] | None = None) -> None:
    """Show the monitor until ``q`` or Ctrl-C; exit 0 then."""
    parser = build_parser()
    config, _ = parse_command(parser, TopConfig, "top", argv)
    try:
        keys = load_keys(config)
    except ValueError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    try:
        from scaler.monitor.top import run
    except ImportError as error:
        if (error.name or "").partition(".")[0] not in ("textual", "rich"):
            raise
        print(f"{INSTALL_HINT} ({error})", file=sys.stderr)
        raise SystemExit(1) from None
    try:
        status = run(config, keys)
    except KeyboardInterrupt:  # a SIGINT from outside (the terminal's own Ctrl-C is a key press)
        status = 0
    raise SystemExit(status)


if __name__ == "__main__":
    main()
