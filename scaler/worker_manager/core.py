"""The worker manager's decisions, with no I/O: commands and engine reports in, start/stop/forget out.

The shell (``manager.py``) feeds this state the scheduler's ``WorkerManagerCommand`` and, every
turn, what the engine adapter reports; it carries out the instructions that come back. The rules:

- **Up to the target.** Start new workers while fewer than ``target`` are starting or running
  (leaving ones do not count). The target starts at the minimum and follows each command,
  clamped to ``[min_workers, max_workers]``.
- **Stop only the named.** A command's ``stop_workers`` are stopped (gracefully, once each); a
  target below the live count stops nobody else: the scheduler chooses who goes, because only it
  knows which workers are idle.
- **Failures are reported, then forgotten.** A FAILED worker is sent in heartbeats, with why, for
  ``failed_report_seconds``, then dropped. Starts after consecutive failures back off (doubling
  up to ``MAX_BACKOFF_SECONDS``), so an engine that refuses every job is not asked in a tight
  loop; a worker that runs for ``HEALTHY_SECONDS`` resets the back-off.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping

from scaler.protocol.messages import ManagedWorkerRecord, ManagedWorkerState, WorkerManagerCommand
from scaler.worker_manager.adapter import WorkerStatus

logger = logging.getLogger(__name__)

FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 60.0
HEALTHY_SECONDS = 30.0


@dataclasses.dataclass(frozen=True)
class StartWorker:
    """Instruction: ask the engine for a worker called ``name``."""

    name: str


@dataclasses.dataclass(frozen=True)
class StopWorker:
    """Instruction: stop worker ``name`` gracefully (SIGTERM: it drains)."""

    name: str


@dataclasses.dataclass(frozen=True)
class ForgetWorker:
    """Instruction: drop FAILED worker ``name`` from the adapter's books."""

    name: str


ManagerInstruction = StartWorker | StopWorker | ForgetWorker


class ManagerState:
    """What one manager runs, wants, and has reported; see the module docstring."""

    def __init__(
        self,
        min_workers: int,
        max_workers: int,
        new_name: Callable[[], str],
        failed_report_seconds: float = 10.0,
    ) -> None:
        if not 0 <= min_workers <= max_workers:
            raise ValueError(f"need 0 <= min_workers <= max_workers, got {min_workers} and {max_workers}")
        self.min_workers = min_workers
        self.max_workers = max_workers
        self.target = min_workers
        self.failed_report_seconds = failed_report_seconds
        self._new_name = new_name
        self._workers: dict[str, WorkerStatus] = {}
        self._stopping: set[str] = set()
        self._failed_at: dict[str, float] = {}  # FAILED worker -> when first seen so
        self._running_since: dict[str, float] = {}
        self._failures = 0  # consecutive, for the back-off
        self._next_start_at = 0.0
        self.started = 0  # totals, for statistics()
        self.stopped = 0
        self.failed = 0

    def adopt(self, names: list[str]) -> None:
        """Count workers found on the engine after a restart (as starting until the next report)."""
        for name in names:
            self._workers.setdefault(name, WorkerStatus(ManagedWorkerState.STARTING))

    def on_command(self, command: WorkerManagerCommand, now: float) -> list[ManagerInstruction]:
        """Take the scheduler's target and stop the workers it names (and only those)."""
        self.target = min(self.max_workers, max(self.min_workers, command.target))
        out: list[ManagerInstruction] = []
        for name in command.stop_workers:
            status = self._workers.get(name)
            if status is None or status.state == ManagedWorkerState.FAILED:
                logger.info("worker manager: asked to stop %s, which it does not run; ignored", name)
                continue
            if name not in self._stopping:
                self._stopping.add(name)
                self.stopped += 1
                out.append(StopWorker(name))
        return out + self._start_missing(now)

    def on_report(self, workers: Mapping[str, WorkerStatus], now: float) -> list[ManagerInstruction]:
        """Take the adapter's report of every worker; start what is missing, forget failures reported long enough."""
        out: list[ManagerInstruction] = []
        for name, status in workers.items():
            if status.state == ManagedWorkerState.FAILED:
                if name not in self._failed_at:
                    self._failed_at[name] = now
                    self.failed += 1
                    self._failures += 1
                    backoff = min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2 ** (self._failures - 1))
                    self._next_start_at = now + backoff
                    logger.warning(
                        "worker %s failed: %s (next start in %.0f s at the earliest)", name, status.detail, backoff
                    )
                elif now - self._failed_at[name] >= self.failed_report_seconds:
                    out.append(ForgetWorker(name))
            elif status.state == ManagedWorkerState.RUNNING:
                since = self._running_since.setdefault(name, now)
                if now - since >= HEALTHY_SECONDS and name not in self._stopping:
                    self._failures = 0
        self._workers = dict(workers)
        for gone in [name for name in self._failed_at if name not in workers]:
            del self._failed_at[gone]
        self._stopping &= workers.keys()
        for gone in [name for name in self._running_since if name not in workers]:
            del self._running_since[gone]
        return out + self._start_missing(now)

    def live(self) -> int:
        """Workers starting or running that are not leaving: what counts against the target."""
        return sum(
            1
            for name, status in self._workers.items()
            if status.state != ManagedWorkerState.FAILED and name not in self._stopping
        )

    def _start_missing(self, now: float) -> list[ManagerInstruction]:
        missing = self.target - self.live()
        if missing <= 0 or now < self._next_start_at:
            return []
        out: list[ManagerInstruction] = []
        for _ in range(missing):
            name = self._new_name()
            self._workers[name] = WorkerStatus(ManagedWorkerState.STARTING)
            self.started += 1
            out.append(StartWorker(name))
        return out

    def records(self) -> list[ManagedWorkerRecord]:
        """The heartbeat's list: every worker it started and has not seen end, FAILED ones with why."""
        return [
            ManagedWorkerRecord(name, status.state, status.detail) for name, status in sorted(self._workers.items())
        ]

    def stopping(self) -> frozenset[str]:
        """Workers asked to stop that have not ended yet."""
        return frozenset(self._stopping)

    def statistics(self) -> dict[str, int]:
        """Counts for logs and tests."""
        return {
            "target": self.target,
            "live": self.live(),
            "stopping": len(self._stopping),
            "started": self.started,
            "stopped": self.stopped,
            "failed": self.failed,
        }
