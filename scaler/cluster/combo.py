"""``SchedulerClusterCombo``: a scheduler and N workers as local subprocesses, for one machine.

Everything runs as child processes of the caller (``python -m scaler.cli...``, each given its
settings as flags derived from its configuration class), so a script
needs no ``if __name__ == "__main__"`` guard, and every child exits with its parent.
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import sys
from typing import Any

from scaler.cluster.cluster import Cluster
from scaler.config.cluster import ClusterConfig
from scaler.config.compat import COMBO_UNSUPPORTED_KWARGS, split_unsupported
from scaler.config.scheduler import SchedulerConfig
from scaler.config.settings import closest, kwargs_values, settings_of, to_argv
from scaler.io.security import SchedulerKeys, check_bind
from scaler.io.sockets import free_tcp_address, validate_address
from scaler.scheduler.publisher import resolve_monitor_address

logger = logging.getLogger(__name__)

SCHEDULER_MODULE = "scaler.cli.scheduler"  # what the scheduler process runs

# Settings the combo decides itself: its address, that its children exit with it, and the key
# files, which come from ``keys_dir`` (a key pair for the scheduler is not one for the workers).
_OWN = ("address", "n_workers", "exit_with_parent", "key_file", "scheduler_key_file", "allow_list_file")


class SchedulerClusterCombo:
    """A local scheduler with ``n_workers`` workers; ``get_address()`` is what clients connect to.

    With no ``address`` it picks a free loopback port (and another for its status feed); with no
    ``n_workers``, one worker per CPU. ``monitor_address`` is where the status feed is published
    (``scaler.monitor.feed.StatusFeed`` reads it), None when ``monitor_address="none"`` turns it off.
    Every other keyword argument is a setting of ``scaler.config.scheduler.SchedulerConfig`` or
    of ``scaler.config.cluster.ClusterConfig`` (``per_worker_queue_size``,
    ``per_worker_capabilities``, timeouts, ...); the ones both have (``logging_paths``,
    ``logging_level``, ``logging_config_file``, ``logging_format``, ``keys_dir``) apply to the
    scheduler and to the workers, and each worker appends its pid to a log file's name. Scaler's
    and opengris-scaler's other keyword arguments (``event_loop``, ``worker_io_threads``,
    ``load_balance_seconds``, ...) are accepted and logged at INFO with what scaler does
    instead; any other name is a ``TypeError``.

    ``keys_dir`` (a directory made by ``scaler_keygen``) gives the scheduler and the workers
    their keys; clients then need ``Client(address, keys_dir=...)`` too. A non-loopback
    ``address`` needs ``keys_dir``, or ``insecure=True`` to serve it without keys
    (``InsecureBindError`` otherwise).
    """

    def __init__(self, address: str | None = None, n_workers: int | None = None, **settings: Any) -> None:
        settings = split_unsupported("SchedulerClusterCombo", settings, COMBO_UNSUPPORTED_KWARGS, logger)
        scheduler_names = {field.name for field in settings_of(SchedulerConfig)} - set(_OWN)
        cluster_names = {field.name for field in settings_of(ClusterConfig)} - set(_OWN)
        for key in settings:
            if key not in scheduler_names | cluster_names:
                suggestion = closest(key, scheduler_names | cluster_names)
                raise TypeError(f"SchedulerClusterCombo() got an unexpected keyword argument {key!r}{suggestion}")
        self._address = validate_address(address) if address else free_tcp_address()
        common: dict[str, Any] = {"address": self._address, "exit_with_parent": True}
        scheduler_kwargs = {key: value for key, value in settings.items() if key in scheduler_names}
        if not address and scheduler_kwargs.get("monitor_address") is None:
            # A picked port's port + 2 may be anyone's: pick the feed's port the same way.
            scheduler_kwargs["monitor_address"] = free_tcp_address()
        cluster_kwargs = {key: value for key, value in settings.items() if key in cluster_names}
        scheduler_config = SchedulerConfig(
            **common, **kwargs_values(SchedulerConfig, "SchedulerClusterCombo", scheduler_kwargs)
        )
        # Where the status feed is published (StatusFeed, scaler_top, scaler_ui read it); None: off.
        self.monitor_address = resolve_monitor_address(self._address, scheduler_config.monitor_address)
        self.keys = SchedulerKeys.load(scheduler_config.keys_dir)
        check_bind(self._address, self.keys, scheduler_config.insecure)  # here: the scheduler's own refusal is unseen
        if self.keys is not None:
            scheduler_config = dataclasses.replace(
                scheduler_config, keys_dir=None, key_file=self.keys.key_file, allow_list_file=self.keys.allow_list_file
            )
        # Built (and so checked) before anything starts: a bad worker argument leaves no process behind.
        self._cluster = Cluster(
            config=ClusterConfig(
                **common,
                n_workers=n_workers,
                **kwargs_values(ClusterConfig, "SchedulerClusterCombo", cluster_kwargs),
            )
        )
        self._scheduler = subprocess.Popen([sys.executable, "-m", SCHEDULER_MODULE, *to_argv(scheduler_config)])
        self._cluster.start()
        self._stopped = False

    def get_address(self) -> str:
        """The address clients connect to."""
        return self._address

    def get_monitor_address(self) -> str | None:
        """Where the scheduler publishes its status feed, or None if it is off."""
        return self.monitor_address

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
