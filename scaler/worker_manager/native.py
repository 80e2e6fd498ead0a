"""The ``native`` adapter: workers as local processes, each in its own session, remembered in a state file.

A worker is ``python -m scaler.cli.worker ADDRESS ... --name=NAME``, started with
``start_new_session`` so that neither a Ctrl-C at the manager's terminal nor the manager's death
reaches it. Its stdout and stderr go to ``STATE_DIR/NAME.log`` (removed when it ends cleanly).
``STATE_DIR/MANAGER.json`` records each worker's pid and start time, so a manager started again
with the same name adopts the workers still running; a pid is trusted only if the process has the
recorded start time and the worker's name on its command line, so a reused pid is never signalled.
A lock file keeps two managers of the same name from sharing one state file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import signal
import subprocess
from pathlib import Path
from typing import IO, Any

import psutil

from scaler.protocol.messages import ManagedWorkerState
from scaler.worker_manager.adapter import EngineAdapter, WorkerCommand, WorkerStatus, check_manager_name, owned_by

logger = logging.getLogger(__name__)

_LOG_TAIL_BYTES = 400


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/scaler/worker_manager``, or ``~/.local/state/scaler/worker_manager``."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "scaler" / "worker_manager"


@dataclasses.dataclass
class _Worker:
    pid: int
    create_time: float
    process: subprocess.Popen[bytes] | None = None  # None for an adopted worker (not our child)


class NativeAdapter(EngineAdapter):
    """Local worker processes for the manager called ``manager_name``; see the module docstring."""

    kind = "native"

    def __init__(self, manager_name: str, command: WorkerCommand, state_dir: str | os.PathLike[str] = "") -> None:
        self.manager_name = check_manager_name(manager_name)
        self.command = command
        self.state_dir = Path(state_dir) if state_dir else default_state_dir()
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.state_file = self.state_dir / f"{manager_name}.json"
        self._lock: IO[str] | None = open(self.state_dir / f"{manager_name}.lock", "w")  # noqa: SIM115
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise RuntimeError(
                f"another worker manager called {manager_name!r} runs with state in {self.state_dir}"
            ) from None
        self._workers: dict[str, _Worker] = {}
        self._failed: dict[str, str] = {}
        self._stopping: set[str] = set()

    def log_path(self, name: str) -> Path:
        """Where worker ``name``'s stdout and stderr go."""
        return self.state_dir / f"{name}.log"

    def pid(self, name: str) -> int | None:
        """The process id of worker ``name``, if it runs."""
        worker = self._workers.get(name)
        return worker.pid if worker is not None else None

    def adopt(self) -> list[str]:
        """Read the state file; keep the workers whose recorded process still runs."""
        try:
            recorded = json.loads(self.state_file.read_text())["workers"]
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError) as error:
            logger.warning("worker manager %s: ignoring unreadable %s: %s", self.manager_name, self.state_file, error)
            return []
        for name, entry in recorded.items():
            try:
                pid, create_time = int(entry["pid"]), float(entry["create_time"])
            except (KeyError, TypeError, ValueError):
                continue
            if owned_by(self.manager_name, name) and _is_worker(pid, create_time, name):
                self._workers[name] = _Worker(pid, create_time)
        self._save()
        return sorted(self._workers)

    def start(self, name: str) -> None:
        """Start worker ``name`` in its own session."""
        env = dict(os.environ, SCALER_WORKER_NAME=name)
        try:
            with open(self.log_path(name), "ab") as log:
                process = subprocess.Popen(
                    self.command.argv(name),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env=env,
                )
            create_time = psutil.Process(process.pid).create_time()
        except (OSError, psutil.Error) as error:
            self._failed[name] = f"could not start: {error}"
            return
        self._workers[name] = _Worker(process.pid, create_time, process)
        self._save()

    def stop(self, name: str) -> None:
        """SIGTERM worker ``name`` (once): it hands back its queued tasks, finishes its running one, exits."""
        worker = self._workers.get(name)
        if worker is None or name in self._stopping:
            return
        self._stopping.add(name)
        if worker.process is not None or _is_worker(worker.pid, worker.create_time, name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGTERM)

    def poll(self) -> dict[str, WorkerStatus]:
        """RUNNING for each live worker; FAILED for one that could not start or exited with an error unasked."""
        ended = []
        for name, worker in self._workers.items():
            if worker.process is not None:
                code = worker.process.poll()
                if code is None:
                    continue
                if code != 0 and name not in self._stopping:
                    self._failed[name] = f"exited with code {code}: {self._log_tail(name)}"
            elif _is_worker(worker.pid, worker.create_time, name):
                continue
            ended.append(name)
        for name in ended:
            del self._workers[name]
            self._stopping.discard(name)
            if name not in self._failed:
                with contextlib.suppress(OSError):
                    self.log_path(name).unlink()
        if ended:
            self._save()
        report = {name: WorkerStatus(ManagedWorkerState.RUNNING) for name in self._workers}
        report.update({name: WorkerStatus(ManagedWorkerState.FAILED, why) for name, why in self._failed.items()})
        return report

    def forget(self, name: str) -> None:
        """Drop a FAILED worker (its log stays for whoever looks into why)."""
        self._failed.pop(name, None)

    def close(self) -> None:
        """Save the state and release the lock; the workers keep running."""
        self._save()
        for worker in self._workers.values():
            if worker.process is not None:
                worker.process.returncode = 0  # not ours to reap or warn about any more
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _save(self) -> None:
        data: dict[str, Any] = {
            "workers": {name: {"pid": w.pid, "create_time": w.create_time} for name, w in self._workers.items()}
        }
        temporary = self.state_file.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(data, indent=1))
        os.replace(temporary, self.state_file)

    def _log_tail(self, name: str) -> str:
        try:
            with open(self.log_path(name), "rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - _LOG_TAIL_BYTES))
                lines = log.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return lines[-1] if lines else "no output"


def _is_worker(pid: int, create_time: float, name: str) -> bool:
    """True if ``pid`` is still the worker ``name`` started at ``create_time`` (not a reused pid, not a zombie)."""
    try:
        process = psutil.Process(pid)
        if abs(process.create_time() - create_time) > 0.05 or process.status() == psutil.STATUS_ZOMBIE:
            return False
        return f"--name={name}" in process.cmdline()
    except psutil.Error:
        return False
