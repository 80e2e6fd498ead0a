"""``scaler CONFIG.toml``: start what the file's sections name, watch them, and stop them all together.

Each section with a command (``[scheduler]``, ``[cluster]``, ``[worker]``; see
``scaler/config/roles.py``) becomes one child process, ``python -m scaler.cli.ROLE -c CONFIG.toml``,
which reads its own section. Every section is checked before anything starts. A section without
an ``address`` connects to the ``[scheduler]`` one. The children run in their own sessions, so a
Ctrl-C reaches only this process, which stops them in the reverse order of their start: the
workers drain (they hand queued tasks back and let running ones finish within their grace
period), then the scheduler stops. A second Ctrl-C or SIGTERM asks every child again, which stops
them at once. If a child exits by itself, the others are stopped too, and this command exits with
its status. Nothing started is left running: stragglers are killed after a deadline.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import psutil

from scaler.config.logging_setup import LoggingSettings, setup_logging
from scaler.config.roles import ROLES, SECTIONS, Role, load_config
from scaler.config.scheduler import SchedulerConfig
from scaler.config.settings import ConfigError, check_sections, read_toml
from scaler.io.security import SchedulerKeys, check_bind
from scaler.scheduler.publisher import resolve_monitor_address

logger = logging.getLogger("scaler.launcher")

_STOP_SECONDS = 10.0  # what a child gets to stop after SIGTERM, beyond its own grace period
_POLL_SECONDS = 0.2


@dataclasses.dataclass
class Child:
    """One started section."""

    role: Role
    command: list[str]
    stop_seconds: float
    process: subprocess.Popen[bytes] | None = None


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``scaler`` (no side effects)."""
    parser = argparse.ArgumentParser(
        prog="scaler",
        description="Start the scaler processes a TOML file's sections name ("
        + ", ".join(f"[{role.section}]" for role in ROLES if role.module is not None)
        + "), watch them, and stop them all on Ctrl-C or SIGTERM. Each process reads its own section, "
        "as `scaler_scheduler -c CONFIG.toml` would.",
    )
    parser.add_argument("config", metavar="CONFIG.toml", help="the configuration file, e.g. examples/config.toml")
    return parser


def _local(address: str) -> str:
    """The address to connect to for a scheduler that binds ``address`` (a wildcard host means this one)."""
    for wildcard in ("tcp://0.0.0.0:", "tcp://*:"):
        if address.startswith(wildcard):
            return "tcp://127.0.0.1:" + address[len(wildcard) :]
    return address


def plan(path: str) -> list[Child]:
    """The children ``path`` asks for, in start order; ConfigError or ValueError before anything starts."""
    data = read_toml(path)
    check_sections(path, data, SECTIONS)
    children = []
    scheduler_address: str | None = None
    monitor_address: str | None = None  # where [scheduler] publishes its status feed, if it does
    for role in ROLES:
        if role.section not in data or role.module is None:
            continue
        config: Any = load_config(role.config, role.section, path)
        command = [sys.executable, "-m", role.module, "-c", path, "--exit-with-parent"]
        if isinstance(config, SchedulerConfig):
            if not config.address:
                raise ConfigError(f'{path}: [scheduler] needs an address, e.g. address = "tcp://127.0.0.1:8516"')
            keys = SchedulerKeys.load(config.keys_dir, config.key_file, config.allow_list_file)
            check_bind(config.address, keys, config.insecure)
            scheduler_address = _local(config.address)
            feed = resolve_monitor_address(config.address, config.monitor_address)
            monitor_address = _local(feed) if feed is not None else None
        elif not config.address:
            if scheduler_address is None or not role.needs_scheduler_address:
                raise ConfigError(f"{path}: [{role.section}] needs the scheduler's address, or a [scheduler] section")
            if role.needs_monitor_address:
                if monitor_address is None:
                    raise ConfigError(
                        f"{path}: [{role.section}] reads the scheduler's status feed, but [scheduler] publishes none: "
                        f'remove monitor_address = "none" there, or give [{role.section}] an address'
                    )
                command.append(monitor_address)
            else:
                command.append(scheduler_address)
        stop_seconds = _STOP_SECONDS + getattr(config, "grace_period_seconds", 0.0)
        children.append(Child(role, command, stop_seconds))
    if not children:
        startable = ", ".join(f"[{role.section}]" for role in ROLES if role.module is not None)
        raise ConfigError(f"{path}: nothing to start; give at least one of {startable}")
    return children


class _Signals:
    """Counts SIGINT and SIGTERM; the main loop acts on the count (a handler only records)."""

    def __init__(self) -> None:
        self.count = 0
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, *_: object) -> None:
        self.count += 1


def _stop(children: list[Child], signals: _Signals) -> None:
    """SIGTERM each child in reverse start order and wait for it; repeat on a new signal; kill at the deadline."""
    started = [child for child in children if child.process is not None]
    everything = []
    for child in started:
        assert child.process is not None
        with contextlib.suppress(psutil.NoSuchProcess):  # their own children too: stragglers are killed last
            everything += psutil.Process(child.process.pid).children(recursive=True)
    for child in reversed(started):
        process = child.process
        assert process is not None
        asked = signals.count
        if process.poll() is None:
            logger.info("scaler: stopping [%s] (pid %d)", child.role.section, process.pid)
            process.terminate()
        deadline = time.monotonic() + child.stop_seconds
        while process.poll() is None and time.monotonic() < deadline:
            if signals.count != asked:  # asked again: children stop at once on a second SIGTERM
                asked = signals.count
                for other in started:
                    if other.process is not None and other.process.poll() is None:
                        other.process.terminate()
            time.sleep(_POLL_SECONDS)
        if process.poll() is None:
            logger.warning("scaler: [%s] did not stop in %gs; killing it", child.role.section, child.stop_seconds)
            process.kill()
        process.wait()
    leftovers = [proc for proc in everything if proc.is_running()]
    for proc in leftovers:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(leftovers, timeout=_STOP_SECONDS)


def main(argv: Sequence[str] | None = None) -> None:
    """Start, supervise and stop what CONFIG.toml names."""
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(LoggingSettings())
    try:
        children = plan(args.config)
    except ValueError as error:  # ConfigError and InsecureBindError are ValueErrors
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    signals = _Signals()
    status = 0
    try:
        for child in children:
            # Own sessions: a Ctrl-C in the terminal reaches only this process, which stops them in order.
            child.process = subprocess.Popen(child.command, start_new_session=True)
            logger.info("scaler: started [%s] (pid %d)", child.role.section, child.process.pid)
        while signals.count == 0:
            exited = next((child for child in children if child.process and child.process.poll() is not None), None)
            if exited is not None:
                assert exited.process is not None
                status = exited.process.returncode
                log = logger.info if status == 0 else logger.error
                log("scaler: [%s] exited with status %d; stopping the others", exited.role.section, status)
                break
            time.sleep(_POLL_SECONDS)
    finally:
        _stop(children, signals)
    logger.info("scaler: stopped")
    sys.exit(status if status > 0 else 1 if status < 0 else 0)


if __name__ == "__main__":
    main()
