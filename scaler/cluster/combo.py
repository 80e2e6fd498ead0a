"""``SchedulerClusterCombo``: a scheduler and N workers as local subprocesses, for one machine.

With ``max_workers`` above ``n_workers`` it is elastic: the ``n_workers`` start at once, as always (so
the first result comes no later), and a ``native`` worker manager (``scaler.cli.worker_manager``)
adds workers up to ``max_workers`` while tasks wait and stops them again once they have been idle
for the scheduler's ``worker_idle_seconds``.

Everything runs as child processes of the caller (``python -m scaler.cli...``, each given its
settings as flags derived from its configuration class), so a script
needs no ``if __name__ == "__main__"`` guard, and every child exits with its parent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from typing import TYPE_CHECKING, Any

from scaler.cluster.boot import BOOT_MODULE, ForkedProcess
from scaler.cluster.cluster import WORKER_MODULE, Cluster
from scaler.config.cluster import ClusterConfig
from scaler.config.compat import COMBO_UNSUPPORTED_KWARGS, split_unsupported
from scaler.config.scheduler import SchedulerConfig
from scaler.config.settings import closest, kwargs_values, settings_of, to_argv
from scaler.config.worker import WorkerSettings
from scaler.config.worker_manager import WorkerManagerConfig
from scaler.io.security import PeerKeys, SchedulerKeys, check_bind
from scaler.io.sockets import free_tcp_address, validate_address
from scaler.scheduler.publisher import resolve_monitor_address

if TYPE_CHECKING:
    import psutil  # imported where used: Client() need not pay for it before its first result

logger = logging.getLogger(__name__)

SCHEDULER_MODULE = "scaler.cli.scheduler"  # what the scheduler process runs

# Settings the combo decides itself: its address, that its children exit with it, and the key
# files, which come from ``keys_dir`` (a key pair for the scheduler is not one for the workers).
_OWN = ("address", "n_workers", "exit_with_parent", "key_file", "scheduler_key_file", "allow_list_file")

BOOT_REPORT_SECONDS = 60.0  # how long to wait for the boot process's forks (it imports first)
MANAGER_MODULE = "scaler.cli.worker_manager"  # what the elastic part runs
MANAGER_POLL_SECONDS = 0.5  # a laptop session: grow within about a second of work waiting


class SchedulerClusterCombo:
    """A local scheduler with ``n_workers`` workers; ``get_address()`` is what clients connect to.

    With no ``address`` it picks a free loopback port (and another for its status feed); with no
    ``n_workers``, one worker per CPU (or, with ``max_workers``, ``min(2, max_workers)``).
    ``max_workers`` above ``n_workers`` makes it elastic: ``n_workers`` workers run all along, and a
    native worker manager starts more, up to ``max_workers``, while tasks wait, and stops them (they
    drain: no task is lost) once idle for ``worker_idle_seconds`` (a scheduler setting, default 60).

    ``monitor_address`` is where the status feed is published
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

    def __init__(
        self, address: str | None = None, n_workers: int | None = None, max_workers: int | None = None, **settings: Any
    ) -> None:
        self._stopped = True  # until everything has started: __del__ has nothing to stop
        self._manager: subprocess.Popen[bytes] | None = None
        self._manager_dir: str | None = None
        if max_workers is not None:
            if n_workers is None:
                n_workers = min(2, max_workers)
            if not 1 <= n_workers <= max_workers:
                raise ValueError(f"need 1 <= n_workers <= max_workers, got {n_workers} and {max_workers}")
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
        manager_argv = None
        fixed = self._cluster.n_workers
        if max_workers is not None and max_workers > fixed:
            manager_argv = self._manager_argv(fixed, max_workers, cluster_kwargs)
        self._worker_report: int | None = None  # the boot process's pipe, until the workers' pids are read
        if hasattr(os, "fork"):
            self._scheduler = self._boot(to_argv(scheduler_config))
        else:
            self._scheduler = subprocess.Popen([sys.executable, "-m", SCHEDULER_MODULE, *to_argv(scheduler_config)])
            self._cluster.start()
        if manager_argv is not None:
            self._manager = subprocess.Popen(manager_argv, start_new_session=True)
        self._stopped = False

    def _boot(self, scheduler_flags: list[str]) -> subprocess.Popen[bytes]:
        """Start the scheduler and the workers from one interpreter (``scaler.cluster.boot``): it imports once.

        The workers' pids come back on a pipe, read when first needed (``_read_workers``), so
        that ``Client()`` goes on connecting while the boot process imports.
        """
        workers = [command[command.index(WORKER_MODULE) + 1 :] for command in self._cluster.worker_commands()]
        spec = json.dumps({"scheduler": scheduler_flags, "workers": workers})
        read, write = os.pipe()
        try:
            process = subprocess.Popen([sys.executable, "-m", BOOT_MODULE, str(write), spec], pass_fds=(write,))
        except BaseException:
            os.close(read)
            raise
        finally:
            os.close(write)
        self._worker_report = read
        self._cluster.adopt(self._read_workers)
        return process

    def _read_workers(self) -> list[ForkedProcess]:
        """The forked workers, from the pids the boot process reports (read once, by ``Cluster``).

        Waits until it has forked them, or has died (no workers then), or ``BOOT_REPORT_SECONDS``
        have passed: a boot process stuck in its imports must not hang ``shutdown``. Workers it
        forks after that exit with it, as they always do with their scheduler.
        """
        if self._worker_report is None:
            return []
        read, self._worker_report = self._worker_report, None
        chunks = []
        deadline = time.monotonic() + BOOT_REPORT_SECONDS
        try:
            while True:
                ready, _, _ = select.select([read], [], [], max(0.0, deadline - time.monotonic()))
                chunk = os.read(read, 65536) if ready else b""
                if not ready:
                    logger.warning(
                        "the local cluster's boot process did not report its workers in %gs", BOOT_REPORT_SECONDS
                    )
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            os.close(read)
        try:
            pids: list[int] = json.loads(b"".join(chunks) or b"[]")
        except ValueError:  # cut short
            pids = []
        return [ForkedProcess(pid) for pid in pids]

    def _manager_argv(self, n_workers: int, max_workers: int, cluster_kwargs: dict[str, Any]) -> list[str]:
        """The native manager for the workers beyond the ``n_workers`` that always run."""
        worker_names = {field.name for field in settings_of(WorkerSettings)} - set(_OWN)
        shared = {key: value for key, value in cluster_kwargs.items() if key in worker_names}
        if self.keys is not None:  # checked here: a manager refused later would leave the combo fixed, silently
            try:
                PeerKeys.load("manager", shared.get("keys_dir"))
            except ValueError as error:
                raise ValueError(
                    f"an elastic SchedulerClusterCombo (max_workers) with keys needs a manager key pair: {error}; "
                    "add one with `scaler_keygen DIR --add manager`"
                ) from None
        self._manager_dir = tempfile.mkdtemp(prefix="scaler-combo-")
        config = WorkerManagerConfig(
            adapter="native",
            address=self._address,
            name=f"combo-{uuid.uuid4().hex[:8]}",
            min_workers=0,
            max_workers=max_workers - n_workers,
            poll_interval_seconds=MANAGER_POLL_SECONDS,
            native_state_dir=self._manager_dir,
            exit_with_parent=True,
            **kwargs_values(WorkerManagerConfig, "SchedulerClusterCombo", shared),
        )
        return [sys.executable, "-m", MANAGER_MODULE, *to_argv(config)]

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
        """The worker agents' process ids (with the ones the elastic part runs now)."""
        return self._cluster.pids() + self._managed_pids()

    def _managed_pids(self) -> list[int]:
        return [process.pid for process in self._managed_processes()]

    def _managed_processes(self) -> list[psutil.Process]:
        """The managed workers alive now, from the manager's state file (a pid counts only with its start time)."""
        if self._manager_dir is None:
            return []
        import psutil

        processes = []
        for path in os.listdir(self._manager_dir):
            if not path.endswith(".json"):
                continue
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError, AttributeError):
                with open(os.path.join(self._manager_dir, path)) as file:
                    entries = json.load(file)["workers"].values()
                for entry in entries:
                    with contextlib.suppress(psutil.Error):
                        process = psutil.Process(int(entry["pid"]))
                        if abs(process.create_time() - float(entry["create_time"])) < 0.05:
                            processes.append(process)
        return processes

    def shutdown(self) -> None:
        """Stop the scheduler, then the workers; leaves no process behind. Idempotent.

        The scheduler goes first: it tells every worker to exit now, since with the whole cluster
        going there is nobody to hand work back to, and nothing to wait a grace period for.
        """
        if self._stopped:
            return
        self._stopped = True
        self._cluster.pids()  # the workers known before the scheduler goes: killed mid-fork, it would hide them
        import psutil

        if self._scheduler.poll() is None:
            self._scheduler.terminate()
            try:
                self._scheduler.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._scheduler.kill()
                self._scheduler.wait()
        managed: list[psutil.Process] = []
        if self._manager is not None:
            if self._manager.poll() is None:
                self._manager.terminate()  # its workers stay: it saves their pids as it goes
                try:
                    self._manager.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self._manager.kill()
                    self._manager.wait()
            managed = self._managed_processes()
            for process in managed:  # the scheduler told them to exit; SIGTERM any that missed it
                with contextlib.suppress(psutil.Error):
                    process.terminate()
        self._cluster.shutdown(grace_seconds=5.0)
        if self._manager is not None:
            _, alive = psutil.wait_procs(managed, timeout=5.0)
            for process in alive:
                with contextlib.suppress(psutil.Error):
                    process.kill()
            if self._manager_dir is not None:
                shutil.rmtree(self._manager_dir, ignore_errors=True)

    def __enter__(self) -> SchedulerClusterCombo:
        return self

    def __exit__(self, *_: object) -> None:
        self.shutdown()

    def __del__(self) -> None:
        if not getattr(self, "_stopped", True):
            self.shutdown()
