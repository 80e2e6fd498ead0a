"""What a worker manager asks of an engine (local processes, Slurm, ...): the ``EngineAdapter`` interface.

An adapter starts and stops workers by the names the manager gives them, and says where each one
is. It holds no policy: the manager decides how many to run and which to stop (and the scheduler
decides for the manager). Every call is quick and never waits for a worker to start or to stop:
the manager calls ``poll`` once per turn and acts on what it returns.
"""

from __future__ import annotations

import abc
import dataclasses
import re
import sys

from scaler.config.settings import to_argv
from scaler.config.worker import WorkerConfig
from scaler.protocol.messages import ManagedWorkerState

_MANAGER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,59}$")


def check_manager_name(name: str) -> str:
    """Return ``name`` if it can prefix worker names and Slurm job names, else raise ``ValueError``.

    Worker names are ``MANAGER.HEX``: no ``.`` in the manager's name keeps one manager's prefix from
    matching another's, so a restarted manager adopts only its own workers.
    """
    if not _MANAGER_NAME.match(name):
        raise ValueError(
            f"bad worker manager name {name!r}: 1 to 60 letters, digits, '_' and '-', starting with a letter or digit"
        )
    return name


def owned_by(manager_name: str, worker_name: str) -> bool:
    """True if ``worker_name`` is one the manager called ``manager_name`` gave."""
    return worker_name.startswith(manager_name + ".") and len(worker_name) > len(manager_name) + 1


@dataclasses.dataclass(frozen=True)
class WorkerStatus:
    """Where one worker is, as its engine reports it; ``detail`` says why for FAILED."""

    state: ManagedWorkerState
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class WorkerCommand:
    """How to run one worker: the interpreter and the settings every worker of this manager shares."""

    settings: WorkerConfig  # with an empty name: each worker gets its own
    python: str = sys.executable

    def argv(self, name: str) -> list[str]:
        """``python -m scaler.cli.worker ADDRESS ... --name=NAME``: the worker's command line."""
        config = dataclasses.replace(self.settings, name=name, exit_with_parent=False)
        return [self.python, "-m", "scaler.cli.worker", *to_argv(config)]


class EngineAdapter(abc.ABC):
    """Starts, stops and follows the workers of one manager on one engine."""

    kind: str = "engine"  # for logs: "native", "slurm"

    @abc.abstractmethod
    def adopt(self) -> list[str]:
        """Find the workers this manager started before a restart; return their names (called once, first)."""

    @abc.abstractmethod
    def start(self, name: str) -> None:
        """Ask the engine for one worker called ``name``; a failure shows as FAILED in the next ``poll``."""

    @abc.abstractmethod
    def stop(self, name: str) -> None:
        """Stop worker ``name`` gracefully: SIGTERM, so it hands back its queued tasks and finishes the running one."""

    @abc.abstractmethod
    def poll(self) -> dict[str, WorkerStatus]:
        """Every worker the adapter knows, by name: STARTING, RUNNING, or FAILED with why.

        A worker that ended (stopped, or exited by itself) is left out. A FAILED one stays until
        ``forget``; the adapter has already cleaned up after it (e.g. cancelled its job).
        """

    @abc.abstractmethod
    def forget(self, name: str) -> None:
        """Drop a FAILED worker from the adapter's books."""

    def close(self) -> None:  # noqa: B027 - most adapters hold nothing to release
        """Release what the adapter holds; the workers keep running."""
