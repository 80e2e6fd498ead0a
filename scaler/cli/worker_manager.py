"""``scaler_worker_manager ADAPTER ADDRESS``: start and stop workers on an engine as the scheduler asks.

The manager connects to the scheduler at ADDRESS, announces its name, its limits and its workers
every poll interval, and does what the scheduler's scaling policy answers: it starts workers up
to the target, and stops (gracefully: they drain) exactly the workers the scheduler names. Stopping
the manager (Ctrl-C, SIGTERM) leaves its workers running; started again with the same name, it
adopts them.
"""

from __future__ import annotations

import argparse
import signal
from collections.abc import Sequence

from scaler.cli.common import start_logging
from scaler.config.command_line import build_parser as build_config_parser
from scaler.config.command_line import parse_command_line
from scaler.config.roles import load_config
from scaler.config.settings import ConfigError
from scaler.config.worker_manager import ADAPTERS, WorkerManagerConfig
from scaler.io.security import PeerKeys
from scaler.io.sockets import validate_address
from scaler.worker_manager.adapter import EngineAdapter, WorkerCommand, check_manager_name
from scaler.worker_manager.manager import WorkerManager
from scaler.worker_manager.native import NativeAdapter
from scaler.worker_manager.slurm import SlurmAdapter, SlurmOptions

_SECTION = "worker_manager"


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``scaler_worker_manager`` (no side effects)."""
    return build_config_parser(
        WorkerManagerConfig,
        prog="scaler_worker_manager",
        description="Run a worker manager: it starts workers on an engine (ADAPTER: "
        + " or ".join(ADAPTERS)
        + ") as the scheduler at ADDRESS asks, between --min-workers and --max-workers, and stops the idle "
        "ones the scheduler names (they drain). Settings come from the flags, then the [worker_manager] section "
        "of -c FILE.toml, then the defaults shown. Worker settings (timeouts, capabilities, keys) are given to "
        "every worker it starts.",
    )


def parse_config(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> WorkerManagerConfig:
    """The configuration (flags over the ``-c`` file over defaults); a usage error for anything wrong."""
    line = parse_command_line(parser, WorkerManagerConfig, argv)
    values = dict(line.values)
    adapter = values.get("adapter", "")
    if "address" not in values and isinstance(adapter, str) and "://" in adapter:
        values["address"] = values.pop("adapter")  # ``-c FILE ADDRESS``: the adapter comes from the file
    try:
        config = load_config(WorkerManagerConfig, _SECTION, line.config_file, values)
    except ConfigError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    except ValueError as error:
        parser.error(str(error))
    assert isinstance(config, WorkerManagerConfig)
    if not config.adapter:
        parser.error(f"the adapter is missing: give it first on the command line ({' or '.join(ADAPTERS)})")
    if not config.address:
        parser.error("the scheduler's address is missing: give it after the adapter, e.g. tcp://127.0.0.1:8516")
    try:
        validate_address(config.address)
        check_manager_name(config.manager_name)
    except ValueError as error:
        parser.error(str(error))
    return config


def make_adapter(config: WorkerManagerConfig) -> EngineAdapter:
    """The engine adapter ``config`` names, set up to start workers with ``config``'s worker settings."""
    command = WorkerCommand(config.worker_config())
    if config.adapter == "kubernetes":  # an optional extra: imported only when asked for
        from scaler.worker_manager.kubernetes import from_config

        return from_config(config, command)
    if config.adapter == "slurm":
        options = SlurmOptions(
            partition=config.slurm_partition,
            time=config.slurm_time,
            cpus_per_task=config.slurm_cpus_per_task,
            mem=config.slurm_mem,
            account=config.slurm_account,
            output=config.slurm_output,
            extra_sbatch=config.slurm_sbatch,
            setup=config.slurm_setup,
            pending_timeout_seconds=config.slurm_pending_timeout_seconds,
        )
        return SlurmAdapter(config.manager_name, command, options)
    return NativeAdapter(config.manager_name, command, config.native_state_dir)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve the scheduler until SIGINT or SIGTERM; the workers keep running."""
    parser = build_parser()
    config = parse_config(parser, argv)
    try:
        keys = PeerKeys.load("manager", config.keys_dir, config.manager_key_file, config.scheduler_key_file)
        # The workers load theirs when they start; check now, so a mistake shows here and not in every worker.
        PeerKeys.load("worker", config.keys_dir, config.key_file, config.scheduler_key_file)
    except ValueError as error:
        parser.error(str(error))
    start_logging(parser, config, [])
    try:
        adapter = make_adapter(config)
    except (OSError, RuntimeError, ValueError, ImportError) as error:
        parser.exit(1, f"{parser.prog}: error: {error}\n")
    manager = WorkerManager(
        config.address,
        adapter,
        config.manager_name,
        config.min_workers,
        config.max_workers,
        capabilities=config.per_worker_capabilities,
        start_seconds=config.worker_start_seconds,
        poll_interval_seconds=config.poll_interval_seconds,
        keys=keys,
        exit_with_parent=config.exit_with_parent,
    )
    signal.signal(signal.SIGTERM, manager.stop)
    signal.signal(signal.SIGINT, manager.stop)
    manager.run()
    if manager.refused is not None or manager.failure is not None:
        raise SystemExit(1)  # the log says why


if __name__ == "__main__":
    main()
