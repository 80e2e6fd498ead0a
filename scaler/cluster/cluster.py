"""``Cluster``: N worker processes connected to one scheduler, started and stopped together."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from typing import Any

from scaler.cli.common import DEFAULT_DEATH_TIMEOUT_SECONDS, DEFAULT_HEARTBEAT_INTERVAL_SECONDS, format_capabilities
from scaler.io.sockets import validate_address

logger = logging.getLogger(__name__)


class Cluster:
    """Starts ``n_workers`` workers (each an agent plus its processors) for the scheduler at ``address``.

    ``per_worker_capabilities`` (e.g. ``{"gpu": 1}``) is what each worker offers to tasks that ask for it.

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
        self._command = [
            sys.executable,
            "-m",
            "scaler.cli.worker",
            self.address,
            f"--heartbeat-interval-seconds={heartbeat_interval_seconds}",
            f"--death-timeout-seconds={death_timeout_seconds}",
            f"--task-timeout-seconds={task_timeout_seconds}",
            f"--logging-level={logging_level}",
        ]
        if capabilities:
            self._command.append(f"--per-worker-capabilities={format_capabilities(capabilities)}")
        if exit_with_parent:
            self._command.append("--exit-with-parent")
        if scaler_compatible:
            logger.debug("Cluster ignores these Scaler arguments: %s", sorted(scaler_compatible))
        self._processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        """Start the workers (returns at once; they connect in the background)."""
        self._processes = [subprocess.Popen(self._command) for _ in range(self.n_workers)]

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

    def shutdown(self, grace_seconds: float = 5.0) -> None:
        """Stop every worker: SIGTERM, then SIGKILL what is still alive after ``grace_seconds``."""
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + grace_seconds
        for process in self._processes:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("worker %d did not stop in %gs; killing it", process.pid, grace_seconds)
                process.kill()
                process.wait()

    terminate = shutdown

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.shutdown()
