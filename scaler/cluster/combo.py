"""``SchedulerClusterCombo``: a scheduler and N workers as local subprocesses, for one machine.

Everything runs as child processes of the caller (``python -m scaler.cli...``), so a script
needs no ``if __name__ == "__main__"`` guard, and every child exits with its parent.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from typing import Any

from scaler.cli.common import (
    DEFAULT_CLIENT_TIMEOUT_SECONDS,
    DEFAULT_DEATH_TIMEOUT_SECONDS,
    DEFAULT_GRACE_PERIOD_SECONDS,
    DEFAULT_HEARTBEAT_INTERVAL_SECONDS,
    DEFAULT_MAX_NUMBER_OF_TASKS_WAITING,
    DEFAULT_MAX_TASK_RETRIES,
    DEFAULT_PER_WORKER_QUEUE_SIZE,
    DEFAULT_UNSCHEDULABLE_GRACE_SECONDS,
    DEFAULT_WORKER_TIMEOUT_SECONDS,
)
from scaler.cluster.cluster import Cluster
from scaler.io.keys import PathLike
from scaler.io.security import SchedulerKeys, check_bind
from scaler.io.sockets import free_tcp_address, validate_address

logger = logging.getLogger(__name__)


class SchedulerClusterCombo:
    """A local scheduler with ``n_workers`` workers; ``get_address()`` is what clients connect to.

    With no ``address`` it picks a free loopback port. Scaler's other keyword arguments
    (``event_loop``, ``worker_io_threads``, ``load_balance_seconds``, ...) are accepted so
    existing scripts run; those that do not apply to this implementation are ignored.

    ``keys_dir`` (a directory made by ``scaler_keygen``) gives the scheduler and the workers
    their keys; clients then need ``Client(address, keys_dir=...)`` too. A non-loopback
    ``address`` needs ``keys_dir``, or ``insecure=True`` to serve it without keys
    (``InsecureBindError`` otherwise).
    """

    def __init__(
        self,
        address: str | None = None,
        n_workers: int = os.cpu_count() or 1,
        per_worker_queue_size: int = DEFAULT_PER_WORKER_QUEUE_SIZE,
        heartbeat_interval_seconds: float = DEFAULT_HEARTBEAT_INTERVAL_SECONDS,
        client_timeout_seconds: float = DEFAULT_CLIENT_TIMEOUT_SECONDS,
        worker_timeout_seconds: float = DEFAULT_WORKER_TIMEOUT_SECONDS,
        death_timeout_seconds: float = DEFAULT_DEATH_TIMEOUT_SECONDS,
        task_timeout_seconds: float = 0.0,
        max_task_retries: int = DEFAULT_MAX_TASK_RETRIES,
        unschedulable_grace_seconds: float = DEFAULT_UNSCHEDULABLE_GRACE_SECONDS,
        max_number_of_tasks_waiting: int = DEFAULT_MAX_NUMBER_OF_TASKS_WAITING,
        protected: bool = True,
        event_loop: str = "builtin",
        logging_level: str = "INFO",
        per_worker_capabilities: dict[str, int] | None = None,
        grace_period_seconds: float = DEFAULT_GRACE_PERIOD_SECONDS,
        keys_dir: PathLike | None = None,
        insecure: bool = False,
        **scaler_compatible: Any,
    ) -> None:
        self._address = validate_address(address) if address else free_tcp_address()
        if event_loop != "builtin":
            logger.debug("event_loop=%r is accepted for compatibility; scaler uses its own poll loop", event_loop)
        if scaler_compatible:
            logger.debug("SchedulerClusterCombo ignores these Scaler arguments: %s", sorted(scaler_compatible))
        self.keys = SchedulerKeys.load(keys_dir)
        check_bind(self._address, self.keys, insecure)  # here too: the scheduler's own refusal would be unseen
        # Built (and so checked) before anything starts: a bad worker argument leaves no process behind.
        self._cluster = Cluster(
            self._address,
            n_workers,
            heartbeat_interval_seconds=heartbeat_interval_seconds,
            death_timeout_seconds=death_timeout_seconds,
            task_timeout_seconds=task_timeout_seconds,
            logging_level=logging_level,
            exit_with_parent=True,
            per_worker_capabilities=per_worker_capabilities,
            grace_period_seconds=grace_period_seconds,
            keys_dir=keys_dir,
        )
        command = [
            sys.executable,
            "-m",
            "scaler.cli.scheduler",
            self._address,
            f"--per-worker-queue-size={per_worker_queue_size}",
            f"--client-timeout-seconds={client_timeout_seconds}",
            f"--worker-timeout-seconds={worker_timeout_seconds}",
            f"--max-task-retries={max_task_retries}",
            f"--unschedulable-grace-seconds={unschedulable_grace_seconds}",
            f"--max-number-of-tasks-waiting={max_number_of_tasks_waiting}",
            f"--logging-level={logging_level}",
            "--protected" if protected else "--no-protected",
            "--exit-with-parent",
        ]
        if self.keys is not None:
            command += [f"--key-file={self.keys.key_file}", f"--allow-list-file={self.keys.allow_list_file}"]
        if insecure:
            command.append("--insecure")
        self._scheduler = subprocess.Popen(command)
        self._cluster.start()
        self._stopped = False

    def get_address(self) -> str:
        """The address clients connect to."""
        return self._address

    def scheduler_pid(self) -> int:
        """The scheduler's process id."""
        return self._scheduler.pid

    def worker_pids(self) -> list[int]:
        """The worker agents' process ids."""
        return self._cluster.pids()

    def shutdown(self) -> None:
        """Stop the scheduler, then the workers; leaves no process behind. Idempotent.

        The scheduler goes first: it tells every worker to exit now, since with the whole cluster
        going there is nobody to hand work back to, and nothing to wait a grace period for.
        """
        if self._stopped:
            return
        self._stopped = True
        if self._scheduler.poll() is None:
            self._scheduler.terminate()
            try:
                self._scheduler.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._scheduler.kill()
                self._scheduler.wait()
        self._cluster.shutdown(grace_seconds=5.0)

    def __enter__(self) -> SchedulerClusterCombo:
        return self

    def __exit__(self, *_: object) -> None:
        self.shutdown()

    def __del__(self) -> None:
        if not getattr(self, "_stopped", True):
            self.shutdown()
