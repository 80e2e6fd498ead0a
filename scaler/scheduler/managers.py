"""Worker managers the scheduler knows: who each is, its limits, and the workers it says it started.

A manager registers with its first ``WorkerManagerHeartbeat`` and is refreshed by each later one.
Its workers are recognised by name: a worker's identity is ``worker|NAME|pid|...`` and the manager
lists the NAMEs it gave. A manager silent past the worker timeout is forgotten; its workers stay,
as plain workers, and a restarted manager that finds them again claims them by name again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from scaler.protocol.messages import ManagedWorkerState, WorkerManagerHeartbeat
from scaler.scheduler.scaling_policy import ManagerLimits


def worker_name(worker_id: bytes) -> str:
    """The NAME part of a worker identity ``worker|NAME|pid|...``; empty for any other identity."""
    kind, _, rest = worker_id.partition(b"|")
    if kind != b"worker":
        return ""
    return rest.partition(b"|")[0].decode("utf-8", "replace")


@dataclass(slots=True)
class ManagerRecord:
    """A connected worker manager, as of its last heartbeat."""

    name: str
    last_seen: float
    limits: ManagerLimits
    start_seconds: float
    workers: dict[str, ManagedWorkerState] = field(default_factory=dict)  # by worker name
    # Names the scheduler told it to stop that it still lists: gone from the scheduler (drained), not
    # yet ended on the engine. They are leaving, so they never count as workers still starting.
    stopping: set[str] = field(default_factory=set)


class ManagerTable(Mapping[bytes, ManagerRecord]):
    """Connected managers by identity, and which manager each worker name belongs to."""

    def __init__(self) -> None:
        self._records: dict[bytes, ManagerRecord] = {}
        self._owners: dict[str, bytes] = {}  # worker name -> manager identity

    def __getitem__(self, manager_id: bytes) -> ManagerRecord:
        return self._records[manager_id]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def refresh(self, manager_id: bytes, heartbeat: WorkerManagerHeartbeat, now: float) -> bool:
        """Apply a heartbeat; return True if the manager is new. Raises ``ValueError`` for impossible limits."""
        limits = ManagerLimits(
            dict(heartbeat.capabilities), heartbeat.min_workers, heartbeat.max_workers, heartbeat.tasks_per_worker
        )
        workers = {record.worker_name: record.state for record in heartbeat.workers}
        record = self._records.get(manager_id)
        new = record is None
        if record is None:
            record = self._records[manager_id] = ManagerRecord(heartbeat.name, now, limits, heartbeat.start_seconds)
        else:
            self._drop_owners(manager_id, record)
        record.name, record.last_seen, record.limits = heartbeat.name, now, limits
        record.start_seconds, record.workers = heartbeat.start_seconds, workers
        record.stopping &= workers.keys()
        for name in workers:
            self._owners[name] = manager_id
        return new

    def remove(self, manager_id: bytes) -> ManagerRecord | None:
        """Forget a manager (its workers stay, as plain workers)."""
        record = self._records.pop(manager_id, None)
        if record is not None:
            self._drop_owners(manager_id, record)
        return record

    def silent(self, now: float, timeout: float) -> list[bytes]:
        """Managers not heard from for more than ``timeout`` seconds."""
        return [manager_id for manager_id, record in self._records.items() if now - record.last_seen > timeout]

    def owner(self, worker_id: bytes) -> bytes | None:
        """The manager that started this worker, if a connected one claims it."""
        return self._owners.get(worker_name(worker_id)) if self._owners else None

    def can_serve(self, capabilities: Mapping[str, int]) -> bool:
        """True if some manager could start a worker with every one of these capabilities."""
        needs = frozenset(capabilities)
        return any(
            record.limits.max_workers > 0 and record.limits.can_serve(needs) for record in self._records.values()
        )

    def _limits(self) -> Iterator[ManagerLimits]:
        return (record.limits for record in self._records.values())

    def _drop_owners(self, manager_id: bytes, record: ManagerRecord) -> None:
        for name in record.workers:
            if self._owners.get(name) == manager_id:
                del self._owners[name]
