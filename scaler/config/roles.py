"""The roles a configuration file's sections name, the class that holds each, and its command.

``scaler CONFIG.toml`` starts every section that has a command, in this order, and stops them in
the reverse order. A later role (monitor, dashboard, worker manager) is one more entry here.
"""

from __future__ import annotations

import dataclasses

from scaler.config.client import ClientConfig
from scaler.config.cluster import ClusterConfig
from scaler.config.keygen import KeygenConfig
from scaler.config.loading import SECTIONS, load_config
from scaler.config.scheduler import SchedulerConfig
from scaler.config.top import TopConfig
from scaler.config.ui import UIConfig
from scaler.config.worker import WorkerConfig
from scaler.config.worker_manager import WorkerManagerConfig

__all__ = ["ROLES", "SECTIONS", "Role", "load_config", "role"]


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

if tuple(role.section for role in ROLES) != SECTIONS:  # loading.py lists them without importing every class
    raise AssertionError(f"scaler.config.loading.SECTIONS is not {[role.section for role in ROLES]}")


def role(section: str) -> Role:
    """The role of ``section``."""
    return next(entry for entry in ROLES if entry.section == section)
