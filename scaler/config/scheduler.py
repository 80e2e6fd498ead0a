"""``SchedulerConfig``: every setting of a scheduler, for ``scaler_scheduler``, ``[scheduler]`` and the combo."""

from __future__ import annotations

import dataclasses

from scaler.config.logging_setup import LoggingSettings
from scaler.config.settings import setting
from scaler.io.sockets import validate_address

_NO_LIMIT = "0 or less: no limit"


@dataclasses.dataclass(frozen=True, kw_only=True)
class SchedulerConfig(LoggingSettings):
    """A scheduler's settings; the defaults suit one machine and scale to many."""

    address: str = setting(
        "",
        help="the address to serve, e.g. tcp://127.0.0.1:8516 (or ipc:///tmp/scaler)",
        group="arguments",
        positional=True,
    )
    per_worker_queue_size: int = setting(
        1000,
        help="the most tasks queued on one worker at a time",
        group="scheduler",
        scaler_flags=("--per-worker-queue-size", "-qs"),
    )
    max_number_of_tasks_waiting: int = setting(
        100_000,
        help="backpressure: with this many of its tasks queued, a client's submit() waits until half of them "
        f"have gone to workers ({_NO_LIMIT})",
        group="scheduler",
        scaler_flags=("--max-number-of-tasks-waiting", "-mt"),
        scaler_meaning="mapped: a bound per client, past which submit() waits, instead of one bound for the "
        "whole scheduler past which tasks are rejected; -1 still means no limit",
    )
    max_task_retries: int = setting(
        3, help="how many worker or processor deaths a task survives before it fails", group="scheduler"
    )
    unschedulable_grace_seconds: float = setting(
        60.0,
        help="fail a task that no connected worker has the capabilities for after this long",
        group="scheduler",
    )
    inline_result_bytes: int = setting(
        64 * 1024,
        help="a result bigger than this stays on the scheduler until its client reads it",
        group="scheduler",
    )
    output_bytes_per_second_per_client: int = setting(
        4 * 1024 * 1024,
        help="streamed task output (stream_output=True) relayed to one client, all its tasks together; over it, "
        f"output is dropped and the client told how much ({_NO_LIMIT})",
        group="scheduler",
    )
    protected: bool = setting(
        True,
        help="clients cannot shut the scheduler down (--no-protected lets them)",
        group="scheduler",
        scaler_flags=("--protected", "-p"),
    )
    monitor_address: str | None = setting(
        None,
        help="publish the status feed (read by scaler_top, scaler_ui and StatusFeed) here, or 'none' to turn it "
        "off (default: the scheduler's port + 2 on the same host; beside an ipc:// path, that path + '.monitor')",
        group="scheduler",
        scaler_flags=("--monitor-address", "-ma"),
        scaler_meaning="mapped: the same default (the scheduler's port + 2); 'none' turns the feed off. Its messages "
        "are scaler's own (scaler.protocol.messages.StatusSnapshot and StatusEvents), read by scaler_top and scaler_ui",
        metavar="ADDRESS",
    )
    status_interval_seconds: float = setting(
        1.0,
        help="how often the status feed publishes a snapshot of the whole cluster",
        group="scheduler",
        scaler_flags=("--status-report-interval-seconds", "-sri"),
        scaler_meaning="mapped: how often the status feed publishes a snapshot",
    )
    worker_idle_seconds: float = setting(
        60.0,
        help="a worker manager's worker idle this long, with no work waiting that it could run, is stopped "
        "(drained); never below the manager's minimum",
        group="timeouts",
    )
    client_timeout_seconds: float = setting(
        60.0,
        help="drop a client not heard from for this long",
        group="timeouts",
        scaler_flags=("--client-timeout-seconds", "-ct"),
    )
    worker_timeout_seconds: float = setting(
        60.0,
        help="drop a worker not heard from for this long, and run its tasks elsewhere",
        group="timeouts",
        scaler_flags=("--worker-timeout-seconds", "-wt"),
    )
    keys_dir: str | None = setting(
        None,
        help="serve with the keys made by `scaler_keygen DIR` (scheduler.key_secret and allowed_keys): only "
        "clients and workers on the allow-list get in, and all traffic is encrypted",
        group="keys",
        metavar="DIR",
    )
    key_file: str | None = setting(
        None, help="the scheduler's key pair (overrides --keys-dir)", group="keys", metavar="FILE"
    )
    allow_list_file: str | None = setting(
        None, help="the allow-list of public keys (overrides --keys-dir)", group="keys", metavar="FILE"
    )
    insecure: bool = setting(
        False,
        help="serve a non-loopback address without keys: anyone who can reach it can run code on the workers",
        group="keys",
    )
    exit_with_parent: bool = setting(False, help="stop when the parent process exits", group="scheduler", hidden=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.address:
            validate_address(self.address)
        if self.per_worker_queue_size < 1:
            raise ValueError(f"per_worker_queue_size must be at least 1, got {self.per_worker_queue_size}")
        if self.max_task_retries < 0:
            raise ValueError(f"max_task_retries cannot be negative, got {self.max_task_retries}")
        for name in (
            "client_timeout_seconds",
            "worker_timeout_seconds",
            "unschedulable_grace_seconds",
            "worker_idle_seconds",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be more than 0, got {getattr(self, name)}")
        if self.monitor_address is not None and self.monitor_address != "none":
            validate_address(self.monitor_address)
        if self.status_interval_seconds <= 0:
            raise ValueError(f"status_interval_seconds must be more than 0, got {self.status_interval_seconds}")
        if self.inline_result_bytes < 0:
            raise ValueError(f"inline_result_bytes cannot be negative, got {self.inline_result_bytes}")
