"""``Cluster``: N worker processes connected to one scheduler, started and stopped together."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from scaler.config.cluster import ClusterConfig
from scaler.config.compat import CLUSTER_UNSUPPORTED_KWARGS, split_unsupported
from scaler.config.settings import kwargs_values, resolve, to_argv
from scaler.config.worker import WorkerConfig, WorkerSettings
from scaler.io.security import PeerKeys

logger = logging.getLogger(__name__)

WORKER_MODULE = "scaler.cli.worker"  # what each worker process runs


class WorkerProcess(Protocol):
    """What ``Cluster`` needs of a worker process: ``subprocess.Popen``, or ``boot.ForkedProcess``."""

    pid: int

    def poll(self) -> int | None:
        """None while it runs, else its exit status."""

    def wait(self, timeout: float | None = None) -> int:
        """Wait for its end; ``subprocess.TimeoutExpired`` after ``timeout`` seconds."""

    def terminate(self) -> None:
        """SIGTERM it."""

    def kill(self) -> None:
        """SIGKILL it."""


class Cluster:
    """Starts ``n_workers`` workers (each an agent plus its processors) for the scheduler at ``address``.

    Every other keyword argument is a setting of ``scaler.config.cluster.ClusterConfig`` (or pass
    ``config=ClusterConfig(...)``; keyword arguments win over it): ``per_worker_capabilities``
    (e.g. ``{"gpu": 1}``, what each worker offers to tasks that ask for it), timeouts,
    ``grace_period_seconds`` (how long ``shutdown`` lets running tasks finish; queued ones are
    handed back to the scheduler at once), ``worker_names``, ``logging_paths``, ``logging_level``,
    ``logging_config_file`` and ``logging_format`` (each worker appends its pid to a log file's
    name), and, for a scheduler with keys, ``keys_dir`` (a ``scaler_keygen`` directory, or a copy
    holding ``worker.key_secret`` and ``scheduler.key``) or ``key_file`` and
    ``scheduler_key_file``. Workers get the key files' paths, never the keys, on their command line.

    Scaler's and opengris-scaler's other keyword arguments (``event_loop``, ``worker_io_threads``,
    ...) are accepted and logged at INFO with what scaler does instead; any other name is a
    ``TypeError``. With ``worker_names`` and no ``n_workers``, there is one worker per name.
    """

    def __init__(
        self,
        address: str | None = None,
        n_workers: int | None = None,
        *,
        config: ClusterConfig | None = None,
        **settings: Any,
    ) -> None:
        settings = split_unsupported("Cluster", settings, CLUSTER_UNSUPPORTED_KWARGS, logger)
        given = kwargs_values(ClusterConfig, "Cluster", settings, exclude=("address", "n_workers"))
        if address is not None:
            given["address"] = address
        if n_workers is not None:
            given["n_workers"] = n_workers
        self.config: ClusterConfig = resolve(ClusterConfig, command_line=given, base=config)
        if not self.config.address:
            raise TypeError("Cluster() needs the scheduler's address")
        self.address = self.config.address
        self.n_workers = self.config.worker_count
        self.per_worker_capabilities = self.config.per_worker_capabilities
        self.grace_period_seconds = self.config.grace_period_seconds
        self.keys = PeerKeys.load(  # checked here, read again by each worker
            "worker", self.config.keys_dir, self.config.key_file, self.config.scheduler_key_file
        )
        names = self.config.worker_names or ("",) * self.n_workers
        self._commands = [self._worker_command(name) for name in names]
        self._processes: list[WorkerProcess] = []
        self._adopted: Callable[[], Sequence[WorkerProcess]] | None = None

    def _worker_command(self, name: str) -> list[str]:
        shared = {field.name: getattr(self.config, field.name) for field in dataclasses.fields(WorkerSettings)}
        worker = WorkerConfig(**shared, name=name)
        if self.keys is not None:  # resolved paths: the worker need not find them in keys_dir again
            worker = dataclasses.replace(
                worker, keys_dir=None, key_file=self.keys.key_file, scheduler_key_file=self.keys.scheduler_key_file
            )
        return [sys.executable, "-m", WORKER_MODULE, *to_argv(worker)]

    @property
    def _command(self) -> list[str]:
        """The first worker's command line."""
        return self._commands[0]

    def start(self) -> None:
        """Start the workers (returns at once; they connect in the background)."""
        # Own sessions: a Ctrl-C in the caller's terminal must not reach the workers, whose stop
        # ``shutdown`` manages (the caller's own exit still stops them: exit_with_parent).
        self._processes = [subprocess.Popen(command, start_new_session=True) for command in self._commands]

    def worker_commands(self) -> list[list[str]]:
        """Each worker's command line (``python -m scaler.cli.worker`` and its flags), as ``start`` runs them."""
        return [list(command) for command in self._commands]

    def adopt(self, processes: Callable[[], Sequence[WorkerProcess]]) -> None:
        """Manage workers started elsewhere from ``worker_commands`` (``scaler.cluster.boot``), instead of ``start``.

        ``processes`` is called when they are first needed (it may wait for them to start).
        """
        self._adopted = processes

    def _started(self) -> list[WorkerProcess]:
        if self._adopted is not None:
            adopted, self._adopted = self._adopted, None
            self._processes = list(adopted())
        return self._processes

    def pids(self) -> list[int]:
        """The process ids of the worker agents."""
        return [process.pid for process in self._started()]

    def is_alive(self) -> bool:
        """True while any worker runs."""
        return any(process.poll() is None for process in self._started())

    def join(self) -> None:
        """Wait until every worker has exited."""
        for process in self._started():
            process.wait()

    def shutdown(self, grace_seconds: float | None = None) -> None:
        """Stop every worker gracefully (SIGTERM), then SIGKILL what is still alive after the grace period.

        ``grace_seconds`` defaults to the workers' own ``grace_period_seconds`` plus a few seconds.
        """
        if grace_seconds is None:
            grace_seconds = self.grace_period_seconds + 5.0
        self.stop_now()  # the first signal: a graceful stop
        deadline = time.monotonic() + grace_seconds
        for process in self._started():
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("worker %d did not stop in %gs; killing it", process.pid, grace_seconds)
                process.kill()
                process.wait()

    terminate = shutdown

    def stop_now(self) -> None:
        """SIGTERM every live worker: the first one drains it, a second one stops it at once."""
        for process in self._started():
            if process.poll() is None:
                process.terminate()

    def __enter__(self) -> Cluster:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.shutdown()
