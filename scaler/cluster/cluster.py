"""``Cluster``: N worker processes connected to one scheduler, started and stopped together."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from typing import Any

from scaler.cli.common import (
    DEFAULT_DEATH_TIMEOUT_SECONDS,
    DEFAULT_GRACE_PERIOD_SECONDS,
    DEFAULT_HEARTBEAT_INTERVAL_SECONDS,
    format_capabilities,
)
from scaler.io.keys import PathLike
from scaler.io.security import PeerKeys
from scaler.io.sockets import validate_address

logger = logging.getLogger(__name__)


class Cluster:
    """Starts ``n_workers`` workers (each an agent plus its processors) for the scheduler at ``address``.

    ``per_worker_capabilities`` (e.g. ``{"gpu": 1}``) is what each worker offers to tasks that ask for it.
    ``grace_period_seconds`` is how long ``shutdown`` lets running tasks finish; queued ones are handed
    back to the scheduler at once.

    For a scheduler with keys, ``keys_dir`` (a ``scaler_keygen`` directory, or a copy holding
    ``worker.key_secret`` and ``scheduler.key``), or ``key_file`` and ``scheduler_key_file``, name
    the workers' key pair and the scheduler's public key. Workers get the files' paths, never the
    keys themselves, on their command line.

    Extra keyword arguments from Scaler's ``Cluster`` are accepted so existing scripts run.
    """

    def __init__(
        self,
        address: str,
        n_workers: int,
        heartbeat_interval_seconds: float = DEFAULT_HEARTBEAT_INTERVAL_SECONDS,
        death_timeout_seconds: float = DEFAULT_DEATH_TIMEOUT_SECONDS,
        task_timeout_seconds: float = 0.0,
        logging_level: str = "INFO",
        exit_with_parent: bool = False,
        per_worker_capabilities: dict[str, int] | None = None,
        keys_dir: PathLike | None = None,
        key_file: PathLike | None = None,
        scheduler_key_file: PathLike | None = None,
        grace_period_seconds: float = DEFAULT_GRACE_PERIOD_SECONDS,
        **scaler_compatible: Any,
    ) -> None:
        if n_workers < 1:
            raise ValueError(f"n_workers must be at least 1, got {n_workers}")
        capabilities = dict(per_worker_capabilities or {})
        for name, count in capabilities.items():
            if not name or "," in name or "=" in name or type(count) is not int or count < 0:
                raise ValueError(f"bad capability {name!r}={count!r}: names without ',' or '=', whole counts >= 0")
        self.per_worker_capabilities = capabilities
        self.address = validate_address(address)
        self.n_workers = n_workers
        self.grace_period_seconds = grace_period_seconds
        self._command = [
            sys.executable,
            "-m",
            "scaler.cli.worker",
            self.address,
            f"--heartbeat-interval-seconds={heartbeat_interval_seconds}",
            f"--death-timeout-seconds={death_timeout_seconds}",
            f"--task-timeout-seconds={task_timeout_seconds}",
            f"--grace-period-seconds={grace_period_seconds}",
            f"--logging-level={logging_level}",
        ]
        if capabilities:
            self._command.append(f"--per-worker-capabilities={format_capabilities(capabilities)}")
        self.keys = PeerKeys.load("worker", keys_dir, key_file, scheduler_key_file)  # checked here; read again there
        if self.keys is not None:
            self._command += [
                f"--key-file={self.keys.key_file}",
                f"--scheduler-key-file={self.keys.scheduler_key_file}",
            ]
        if exit_with_parent:
            self._command.append("--exit-with-parent")
        if scaler_compatible:
            logger.debug("Cluster ignores these Scaler arguments: %s", sorted(scaler_compatible))
        self._processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        """Start the workers (returns at once; they connect in the background)."""
        # Own sessions: a Ctrl-C in the caller's terminal must not reach the workers, whose stop
        # ``shutdown`` manages (the caller's own exit still stops them: --exit-with-parent).
        self._processes = [subprocess.Popen(self._command, start_new_session=True) for _ in range(self.n_workers)]

    def pids(self) -> list[int]:
        """The process ids of the worker agents."""
        return [process.pid for process in self._processes]

    def is_alive(self) -> bool:
        """True while any worker runs."""
        return any(process.poll() is None for process in self._processes)

    def join(self) -> None:
        """Wait until every worker has exited."""
        for process in self._processes:
            process.wait()

    def shutdown(self, grace_seconds: float | None = None) -> None:
        """Stop every worker gracefully (SIGTERM), then SIGKILL what is still alive after the grace period.

        ``grace_seconds`` defaults to the workers' own ``grace_period_seconds`` plus a few seconds.
        """
        if grace_seconds is None:
            grace_seconds = self.grace_period_seconds + 5.0
        self.stop_now()  # the first signal: a graceful stop
        deadline = time.monotonic() + grace_seconds
        for process in self._processes:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("worker %d did not stop in %gs; killing it", process.pid, grace_seconds)
                process.kill()
                process.wait()

    terminate = shutdown

    def stop_now(self) -> None:
        """SIGTERM every live worker: the first one drains it, a second one stops it at once."""
        for process in self._processes:
            if process.poll() is None:
                process.terminate()

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.shutdown()
