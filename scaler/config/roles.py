"""The roles a configuration file's sections name, the class that holds each, and its command.

``scaler CONFIG.toml`` starts every section that has a command, in this order, and stops them in
the reverse order. A later role (monitor, dashboard, worker manager) is one more entry here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from scaler.config.client import ClientConfig
from scaler.config.cluster import ClusterConfig
from scaler.config.keygen import KeygenConfig
from scaler.config.scheduler import SchedulerConfig
from scaler.config.settings import Config, ConfigError, check_sections, read_toml, resolve, section_values
from scaler.config.top import TopConfig
from scaler.config.ui import UIConfig
from scaler.config.worker import WorkerConfig
from scaler.config.worker_manager import WorkerManagerConfig


@dataclasses.dataclass(frozen=True)
class Role:
    """A section of a configuration file: its settings class, and the module its process runs, if any."""

    section: str
    config: type
    module: str | None  # run as ``python -m MODULE -c FILE``; None: read in-process only (the client)
    needs_scheduler_address: bool = False  # takes [scheduler]'s address when its own section has none
    needs_monitor_address: bool = False  # takes [scheduler]'s monitor address (its port + 2) instead


ROLES: tuple[Role, ...] = (
    Role("scheduler", SchedulerConfig, "scaler.cli.scheduler"),
    Role("cluster", ClusterConfig, "scaler.cli.cluster", needs_scheduler_address=True),
    Role("worker", WorkerConfig, "scaler.cli.worker", needs_scheduler_address=True),
    Role("worker_manager", WorkerManagerConfig, "scaler.cli.worker_manager", needs_scheduler_address=True),
    Role("client", ClientConfig, None, needs_scheduler_address=True),
    Role("ui", UIConfig, "scaler.cli.ui", needs_scheduler_address=True, needs_monitor_address=True),
    Role("keygen", KeygenConfig, None),  # read by scaler_keygen -c; the launcher makes no keys
    Role("top", TopConfig, None),  # read by scaler_top -c; a terminal monitor is not a background process
)

SECTIONS = tuple(role.section for role in ROLES)


def role(section: str) -> Role:
    """The role of ``section``."""
    return next(entry for entry in ROLES if entry.section == section)


def load_config(
    cls: type[Config], section: str, config_file: str | None = None, overrides: Mapping[str, Any] | None = None
) -> Config:
    """``cls`` from its defaults, then ``[section]`` of ``config_file``, then ``overrides`` (the command line).

    Raises ``ConfigError`` naming the file for anything wrong in it, before ``overrides`` are
    applied, and ``ValueError`` for a bad override.
    """
    file_values: dict[str, Any] = {}
    if config_file is not None:
        data = read_toml(config_file)
        check_sections(config_file, data, SECTIONS)
        file_values = section_values(cls, config_file, data, section)
        try:
            cls(**file_values)
        except ValueError as error:
            raise ConfigError(f"{config_file}: [{section}] {error}") from None
    return resolve(cls, file_values=file_values, command_line=overrides)
