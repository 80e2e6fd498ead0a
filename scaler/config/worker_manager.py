"""``WorkerManagerConfig``: a worker manager's settings, for ``scaler_worker_manager`` and ``[worker_manager]``.

Besides its own settings (its name, its limits, the adapter's options), a manager holds every
setting its workers share (``WorkerSettings``): it hands them to each worker it starts. The key
settings inherited from there are the workers'; the manager's own key pair is
``manager.key_secret`` in ``--keys-dir``, or ``--manager-key-file``.
"""

from __future__ import annotations

import dataclasses
import socket

from scaler.config.kubernetes import KubernetesSettings
from scaler.config.logging_setup import LoggingSettings
from scaler.config.settings import setting, settings_of
from scaler.config.worker import WorkerConfig, WorkerSettings

ADAPTERS = ("native", "slurm", "kubernetes")


def parse_lines(text: str) -> tuple[str, ...]:
    """``a;b`` -> ``("a", "b")``: several lines in one command-line value."""
    return tuple(line.strip() for line in text.split(";") if line.strip())


@dataclasses.dataclass(frozen=True, kw_only=True)
class _AdapterFirst(LoggingSettings):
    """Declares the adapter before the inherited address, so the command line reads ``ADAPTER ADDRESS``."""

    adapter: str = setting(
        "",
        help="the engine that runs the workers: native (local processes), slurm (one batch job per worker) or "
        "kubernetes (one Pod per worker)",
        group="arguments",
        positional=True,
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkerManagerConfig(WorkerSettings, KubernetesSettings, _AdapterFirst):
    """A worker manager: which engine, how many workers, and what each worker is given."""

    name: str = setting(
        "",
        help="the manager's name: the prefix of its workers' names (and Slurm job names), by which a manager "
        "started again finds them (default: ADAPTER-HOST)",
        group="worker manager",
    )
    min_workers: int = setting(0, help="never fewer workers than this", group="worker manager")
    max_workers: int = setting(4, help="never more workers than this", group="worker manager")
    poll_interval_seconds: float = setting(
        2.0,
        help="how often the manager reads its workers' state from the engine and heartbeats the scheduler",
        group="worker manager",
    )
    worker_start_seconds: float = setting(
        0.0,
        help="how long a worker takes to start, as told to the scheduler (0: not known)",
        group="worker manager",
    )
    manager_key_file: str | None = setting(
        None,
        help="the manager's own key pair (default: manager.key_secret in --keys-dir; the other key settings are "
        "the workers')",
        group="keys",
        metavar="FILE",
    )
    native_state_dir: str = setting(
        "",
        help="where the native adapter records its workers and keeps their logs "
        "(default: $XDG_STATE_HOME/scaler/worker_manager)",
        group="native adapter",
        metavar="DIR",
    )
    slurm_partition: str = setting("", help="sbatch --partition (default: Slurm's)", group="slurm adapter")
    slurm_time: str = setting("", help="sbatch --time, e.g. 8:00:00 (default: the partition's)", group="slurm adapter")
    slurm_cpus_per_task: int = setting(0, help="sbatch --cpus-per-task (default: 0, Slurm's)", group="slurm adapter")
    slurm_mem: str = setting("", help="sbatch --mem, e.g. 4G (default: Slurm's)", group="slurm adapter")
    slurm_account: str = setting("", help="sbatch --account (default: the user's)", group="slurm adapter")
    slurm_output: str = setting(
        "scaler-%x-%j.out",
        help="sbatch --output: each worker's log (%x is the job name, %j its id)",
        group="slurm adapter",
        metavar="PATTERN",
    )
    slurm_sbatch: tuple[str, ...] = setting(
        (),
        help="more #SBATCH lines, ';'-separated, e.g. --slurm-sbatch='--constraint=avx2;--qos=low'",
        group="slurm adapter",
        metavar="OPTIONS",
        parse=parse_lines,
        format=";".join,
    )
    slurm_setup: tuple[str, ...] = setting(
        (),
        help="shell lines run before the worker in its job script, ';'-separated, e.g. 'module load python'",
        group="slurm adapter",
        metavar="LINES",
        parse=parse_lines,
        format=";".join,
    )
    slurm_pending_timeout_seconds: float = setting(
        0.0,
        help="cancel a worker job still pending after this long and report it failed (0: only when Slurm says "
        "it can never start)",
        group="slurm adapter",
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.adapter and self.adapter not in ADAPTERS:
            raise ValueError(f"unknown adapter {self.adapter!r}: use one of {', '.join(ADAPTERS)}")
        if not 0 <= self.min_workers <= self.max_workers:
            raise ValueError(f"need 0 <= min_workers <= max_workers, got {self.min_workers} and {self.max_workers}")
        for name in ("poll_interval_seconds",):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be more than 0, got {getattr(self, name)}")
        for name in ("worker_start_seconds", "slurm_pending_timeout_seconds", "slurm_cpus_per_task"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} cannot be negative, got {getattr(self, name)}")

    @property
    def manager_name(self) -> str:
        """``name``, or ``ADAPTER-HOST`` (the host's short name, with only letters, digits, '_' and '-')."""
        if self.name:
            return self.name
        host = "".join(c if c.isalnum() or c in "_-" else "-" for c in socket.gethostname().split(".")[0])
        return f"{self.adapter or 'manager'}-{host}"[:60]

    def worker_config(self) -> WorkerConfig:
        """The settings each worker is started with (its name is added per worker)."""
        shared = {field.name: getattr(self, field.name) for field in settings_of(WorkerSettings)}
        shared["exit_with_parent"] = False  # workers outlive their manager
        return WorkerConfig(**shared)
