"""Worker lifecycle: who is connected, what each holds, what it can run, and whether it is leaving.

A worker is registered by its first heartbeat, which also carries its capabilities; every
message refreshes it. It holds tasks (in dispatch order), and the functions and objects it was
sent, so each crosses the link once. It may be asked to hand tasks back (``balancing``), and it
may refuse those it runs (``kept``). A draining worker (``leaving``) gets nothing new, and is let
go once it holds nothing. A worker silent past its timeout, or whose connection closed, is dead.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field

from scaler.protocol.messages import Task, WorkerHeartbeat
from scaler.utility.invariants import require


@dataclass(slots=True)
class WorkerRecord:
    """A connected worker: when it was last heard from, what it holds, and what it can run."""

    last_seen: float
    tasks: dict[bytes, None] = field(default_factory=dict)  # in dispatch order
    functions: set[bytes] = field(default_factory=set)
    objects: set[bytes] = field(default_factory=set)
    capabilities: dict[str, int] = field(default_factory=dict)
    balancing: bool = False  # a BalanceRequest to it awaits its answer
    kept: set[bytes] = field(default_factory=set)  # tasks it refused to hand back: running, or parked
    leaving: bool = False  # draining before a graceful stop: it finishes what it started and gets nothing new
    retiring: bool = False  # idle, and its worker manager was told to stop it: it gets nothing new meanwhile
    busy_at: float = 0.0  # when it was last sent a task or sent a result: idle since then if it holds none
    # For the status feed: when it joined, its last heartbeat and the figures that came with it,
    # the interval its heartbeats come at (estimated; 0 until two arrived), and its finished tasks.
    joined_at: float = 0.0
    heartbeat: WorkerHeartbeat | None = None
    heartbeat_at: float = 0.0
    heartbeat_interval: float = 0.0
    done: int = 0

    def can_run(self, task: Task) -> bool:
        """True if this worker has every capability the task asks for."""
        return all(name in self.capabilities for name in task.capabilities)


class WorkerTable(Mapping[bytes, WorkerRecord]):
    """Connected workers by identity; see the module docstring."""

    def __init__(self) -> None:
        self._records: dict[bytes, WorkerRecord] = {}
        # Workers let go after a graceful leave, and when: a heartbeat they sent before reading the
        # DisconnectResponse must not register them again (a ghost that a worker manager would count).
        self._released: dict[bytes, float] = {}

    def mark_released(self, worker_id: bytes, now: float) -> None:
        """Remember that ``worker_id`` left on purpose: its late heartbeats are ignored."""
        self._released[worker_id] = now

    def was_released(self, worker_id: bytes) -> bool:
        """True if this worker left on purpose recently (it never comes back under the same identity)."""
        return worker_id in self._released

    def forget_released(self, before: float) -> None:
        """Drop the memory of workers released before ``before``."""
        for worker_id in [w for w, at in self._released.items() if at < before]:
            del self._released[worker_id]

    def __getitem__(self, worker_id: bytes) -> WorkerRecord:
        return self._records[worker_id]

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, worker_id: object) -> bool:
        return worker_id in self._records

    def get(self, worker_id: bytes, default: None = None) -> WorkerRecord | None:  # type: ignore[override]
        """The worker's record, or None (faster than ``Mapping.get``, which goes through an exception)."""
        return self._records.get(worker_id)

    def register_or_refresh(
        self, worker_id: bytes, now: float, capabilities: dict[str, int], heartbeat: WorkerHeartbeat | None = None
    ) -> bool:
        """A heartbeat at ``now``: refresh the worker, registering it if new (then return True)."""
        worker = self._records.get(worker_id)
        new = worker is None
        if worker is None:
            worker = self._records[worker_id] = WorkerRecord(last_seen=now, joined_at=now)
        else:  # a smoothed gap: one late heartbeat must not make the next lateness look normal
            gap = now - worker.heartbeat_at
            previous = worker.heartbeat_interval
            worker.heartbeat_interval = gap if not previous else 0.8 * previous + 0.2 * gap
        worker.last_seen = now
        worker.heartbeat_at = now
        worker.heartbeat = heartbeat
        worker.capabilities = capabilities
        return new

    def heard_from(self, worker_id: bytes, now: float) -> WorkerRecord | None:
        """Refresh a known worker (any message shows it is alive); None if unknown (it registers by heartbeat)."""
        worker = self._records.get(worker_id)
        if worker is not None:
            worker.last_seen = now
        return worker

    def unassign(self, worker_id: bytes, task_id: bytes) -> None:
        """The task is no longer on this worker (if the worker is still connected)."""
        worker = self._records.get(worker_id)
        if worker is not None:
            worker.tasks.pop(task_id, None)
            worker.kept.discard(task_id)

    def remove(self, worker_id: bytes) -> WorkerRecord:
        """The worker is gone (dead, or let go): forget it and return its record."""
        return self._records.pop(worker_id)

    def drop_objects(self, freed: Collection[bytes]) -> list[tuple[bytes, list[bytes]]]:
        """Objects were freed: forget them on each worker; return ``(worker, ids it held)`` to tell."""
        return self._drop(freed, functions=False)

    def drop_functions(self, dropped: Collection[bytes]) -> list[tuple[bytes, list[bytes]]]:
        """Functions were dropped: forget them on each worker; return ``(worker, ids it held)`` to tell."""
        return self._drop(dropped, functions=True)

    def _drop(self, gone: Collection[bytes], functions: bool) -> list[tuple[bytes, list[bytes]]]:
        told: list[tuple[bytes, list[bytes]]] = []
        if not gone:
            return told
        for worker_id, worker in self._records.items():
            held = worker.functions if functions else worker.objects
            dropped = [item for item in gone if item in held]
            if dropped:
                held.difference_update(dropped)
                told.append((worker_id, dropped))
        return told

    def validate(self, per_worker_queue_size: int) -> None:
        """Raise ``InvariantError`` if a worker holds too much, or keeps a refusal of a task it lost."""
        for worker in self._records.values():
            require(len(worker.tasks) <= per_worker_queue_size, "worker over-assigned")
            require(worker.kept <= worker.tasks.keys(), "a refusal kept for a task the worker no longer holds")
