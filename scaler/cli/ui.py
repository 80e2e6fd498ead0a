"""``scaler_ui MONITOR_ADDRESS`` (also ``scaler_gui``): the web dashboard of a running cluster."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from scaler.cli.common import parse_command, start_logging
from scaler.config.command_line import build_parser as build_config_parser
from scaler.config.ui import UIConfig
from scaler.io.security import PeerKeys

_UI_MODULES = ("starlette", "uvicorn", "prometheus_client")


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``scaler_ui`` (no side effects; it imports none of the extra's packages)."""
    return build_config_parser(
        UIConfig,
        prog="scaler_ui",
        description="Serve a web dashboard of a running cluster, read from its scheduler's status feed "
        "(the monitor address, by default the scheduler's port + 2). Settings come from the flags, then the "
        "[ui] section of -c FILE.toml, then the defaults shown. Needs pip install 'scaler[ui]'.",
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Parse flags and serve the dashboard until SIGINT/SIGTERM."""
    parser = build_parser()
    config, notes = parse_command(parser, UIConfig, "ui", argv)
    try:
        from scaler.ui.security import check_ui_bind

        check_ui_bind(config.ui_address, config.ui_token, config.insecure)
        keys = PeerKeys.load(
            "monitor", keys_dir=config.keys_dir, key_file=config.key_file, scheduler_key_file=config.scheduler_key_file
        )
    except ValueError as error:  # InsecureBindError is one too
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    try:
        from scaler.ui.server import serve
    except ImportError as error:
        if error.name is None or error.name.partition(".")[0] not in _UI_MODULES:
            raise
        parser.exit(1, f"{parser.prog}: error: the dashboard needs {error.name}: pip install 'scaler[ui]'\n")
    start_logging(parser, config, notes)
    serve(config, keys)


if __name__ == "__main__":
    main()
