"""``WorkerConfig``: the settings of one worker, and ``WorkerSettings``, those each worker of a cluster shares."""

from __future__ import annotations

import argparse
import dataclasses

from scaler.config.logging_setup import LoggingSettings
from scaler.config.settings import setting
from scaler.io.sockets import validate_address


def parse_capabilities(text: str) -> dict[str, int]:
    """Parse ``gpu=1,fpga=2`` (a bare ``gpu`` means ``gpu=1``) into ``{"gpu": 1, "fpga": 2}``."""
    capabilities: dict[str, int] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, equals, count = item.partition("=")
        name = name.strip()
        if not name:
            raise argparse.ArgumentTypeError(f"capability {item!r} has no name")
        try:
            capabilities[name] = int(count) if equals else 1
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"capability {name!r} needs a whole number, got {count.strip()!r}"
            ) from None
        if capabilities[name] < 0:
            raise argparse.ArgumentTypeError(f"capability {name!r} cannot be negative")
    return capabilities


def format_capabilities(capabilities: dict[str, int]) -> str:
    """The inverse of ``parse_capabilities``."""
    return ",".join(f"{name}={count}" for name, count in capabilities.items())


def check_capabilities(capabilities: dict[str, int]) -> None:
    """ValueError unless every name is usable on a command line and every count a whole number >= 0."""
    for name, count in capabilities.items():
        if not isinstance(name, str) or not name or "," in name or "=" in name:
            raise ValueError(f"bad capability {name!r}={count!r}: names without ',' or '=', whole counts >= 0")
        if type(count) is not int or count < 0:
            raise ValueError(f"bad capability {name!r}={count!r}: names without ',' or '=', whole counts >= 0")


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkerSettings(LoggingSettings):
    """What every worker of a cluster is given: the scheduler to serve, timeouts, capabilities, keys."""

    address: str = setting(
        "", help="the scheduler's address, e.g. tcp://127.0.0.1:8516", group="arguments", positional=True
    )
    per_worker_capabilities: dict[str, int] = setting(
        default_factory=dict,
        help="what each worker offers to tasks that ask for it, e.g. gpu=1,fpga=2 (a bare gpu means gpu=1)",
        group="workers",
        scaler_flags=("--per-worker-capabilities", "-pwc"),
        metavar="NAME=COUNT,...",
        parse=parse_capabilities,
        format=format_capabilities,
    )
    heartbeat_interval_seconds: float = setting(
        2.0,
        help="how often a worker tells the scheduler it is alive",
        group="timeouts",
        scaler_flags=("--heartbeat-interval-seconds", "--heartbeat-interval", "-hi"),
    )
    death_timeout_seconds: float = setting(
        300.0,
        help="a worker exits after this long without a word from its scheduler",
        group="timeouts",
        scaler_flags=("--death-timeout-seconds", "-ds"),
    )
    task_timeout_seconds: float = setting(
        0.0,
        help="stop a task that runs longer than this and fail it with TaskTimeoutError (0: no limit); "
        "a task's own timeout overrides it",
        group="timeouts",
        scaler_flags=("--task-timeout-seconds", "-tts"),
    )
    grace_period_seconds: float = setting(
        30.0,
        help="on SIGTERM or Ctrl-C a worker hands its queued tasks back and gives its running task this long "
        "to finish; a second signal stops it at once (0: at once)",
        group="timeouts",
    )
    output_bytes_per_second: int = setting(
        2 * 1024 * 1024,
        help="streamed task output (stream_output=True) a worker forwards, all its processors together; over it, "
        "output is dropped and the client told how much (0 or less: no limit)",
        group="workers",
    )
    output_bytes_per_second_per_processor: int = setting(
        1024 * 1024,
        help="streamed task output one processor's tasks may print; over it, output is dropped and counted "
        "(0 or less: no limit)",
        group="workers",
    )
    keys_dir: str | None = setting(
        None,
        help="a directory made by `scaler_keygen DIR`, or a copy holding worker.key_secret and scheduler.key",
        group="keys",
        metavar="DIR",
    )
    key_file: str | None = setting(
        None, help="the worker's key pair (overrides --keys-dir)", group="keys", metavar="FILE"
    )
    scheduler_key_file: str | None = setting(
        None, help="the scheduler's public key, scheduler.key (overrides --keys-dir)", group="keys", metavar="FILE"
    )
    exit_with_parent: bool = setting(False, help="stop when the parent process exits", group="workers", hidden=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.address:
            validate_address(self.address)
        check_capabilities(self.per_worker_capabilities)
        if self.heartbeat_interval_seconds <= 0:
            raise ValueError(f"heartbeat_interval_seconds must be more than 0, got {self.heartbeat_interval_seconds}")
        for name in ("death_timeout_seconds", "task_timeout_seconds", "grace_period_seconds"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} cannot be negative, got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkerConfig(WorkerSettings):
    """One worker (an agent and its processors): what ``scaler_cluster`` gives each of its workers."""

    name: str = setting(
        "", help="this worker's name in its identity and logs (default: the host name)", group="workers"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if "|" in self.name or len(self.name) > 100:
            raise ValueError(f"bad worker name {self.name!r}: at most 100 characters, and no '|'")
