"""The manager process's loop against a real zmq ROUTER that plays the scheduler's part.

The test sends ``WorkerManagerCommand``s and reads the manager's heartbeats over a real socket.
The engine is a small in-memory adapter: what is checked here is the manager's handling of
commands (the real engines have their own tests).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from scaler.protocol.messages import (
    ManagedWorkerRecord,
    ManagedWorkerState,
    WorkerManagerCommand,
    WorkerManagerHeartbeat,
)
from scaler.worker_manager.adapter import EngineAdapter, WorkerStatus
from scaler.worker_manager.manager import WorkerManager
from tests.managers.support import FakeScheduler


class MemoryEngine(EngineAdapter):
    """Workers that are names in a dict; names in ``refuse`` fail to start, with a reason."""

    kind = "memory"

    def __init__(self, adopted: tuple[str, ...] = ()) -> None:
        self.lock = threading.Lock()
        self.workers: dict[str, WorkerStatus] = {name: WorkerStatus(ManagedWorkerState.RUNNING) for name in adopted}
        self.started: list[str] = []
        self.stopped: list[str] = []
        self.forgotten: list[str] = []
        self.refuse_all = False

    def adopt(self) -> list[str]:
        return sorted(self.workers)

    def start(self, name: str) -> None:
        with self.lock:
            self.started.append(name)
            failed = WorkerStatus(ManagedWorkerState.FAILED, "no such partition")
            self.workers[name] = failed if self.refuse_all else WorkerStatus(ManagedWorkerState.RUNNING)

    def stop(self, name: str) -> None:
        with self.lock:
            self.stopped.append(name)
            self.workers.pop(name, None)  # drained at once

    def poll(self) -> dict[str, WorkerStatus]:
        with self.lock:
            return dict(self.workers)

    def forget(self, name: str) -> None:
        with self.lock:
            self.forgotten.append(name)
            self.workers.pop(name, None)


@pytest.fixture
def scheduler() -> Iterator[FakeScheduler]:
    fake = FakeScheduler()
    yield fake
    fake.close()


def run_manager(manager: WorkerManager) -> threading.Thread:
    thread = threading.Thread(target=manager.run, daemon=True)
    thread.start()
    return thread


def names(beat: WorkerManagerHeartbeat, state: ManagedWorkerState = ManagedWorkerState.RUNNING) -> set[str]:
    return {record.worker_name for record in beat.workers if record.state == state}


@pytest.mark.timeout(30)
def test_heartbeats_announce_the_manager_and_commands_start_and_stop_exactly_the_named(scheduler) -> None:
    engine = MemoryEngine()
    manager = WorkerManager(
        scheduler.address, engine, "mem", 1, 4, capabilities={"gpu": 1}, start_seconds=3.0, poll_interval_seconds=0.2
    )
    thread = run_manager(manager)
    try:
        beat = scheduler.heartbeat(until=lambda beat: len(beat.workers) == 1)
        assert (beat.name, beat.capabilities, beat.min_workers, beat.max_workers) == ("mem", {"gpu": 1}, 1, 4)
        assert (beat.tasks_per_worker, beat.start_seconds) == (1, 3.0)
        assert scheduler.peer is not None and scheduler.peer.startswith(b"manager|mem|")
        first = beat.workers[0].worker_name
        assert first.startswith("mem.")

        scheduler.send(WorkerManagerCommand(target=3, stop_workers=[]))
        beat = scheduler.heartbeat(until=lambda beat: len(beat.workers) == 3)
        assert len(engine.started) == 3

        victim = sorted({record.worker_name for record in beat.workers} - {first})[0]
        scheduler.send(WorkerManagerCommand(target=2, stop_workers=[victim, "someone.else"]))
        beat = scheduler.heartbeat(until=lambda beat: victim not in {record.worker_name for record in beat.workers})
        assert engine.stopped == [victim]  # only the named one, and a name it does not run is ignored
        assert len(beat.workers) == 2

        scheduler.send(WorkerManagerCommand(target=0, stop_workers=[]))  # clamped to the minimum; nobody named
        scheduler.heartbeat()
        time.sleep(0.5)
        assert engine.stopped == [victim] and len(engine.poll()) == 2 and manager.state.target == 1
    finally:
        manager.stop()
        thread.join(10)
    assert not thread.is_alive()
    assert len(engine.poll()) == 2  # a manager that stops leaves its workers running


@pytest.mark.timeout(30)
def test_a_worker_that_fails_to_start_is_reported_with_why_then_forgotten_and_the_manager_goes_on(scheduler) -> None:
    engine = MemoryEngine()
    engine.refuse_all = True
    manager = WorkerManager(scheduler.address, engine, "bad", 0, 2, poll_interval_seconds=0.2, failed_report_seconds=1)
    thread = run_manager(manager)
    try:
        scheduler.heartbeat()
        scheduler.send(WorkerManagerCommand(target=1, stop_workers=[]))
        beat = scheduler.heartbeat(until=lambda beat: bool(names(beat, ManagedWorkerState.FAILED)))
        failed = [record for record in beat.workers if record.state == ManagedWorkerState.FAILED]
        assert failed == [ManagedWorkerRecord(engine.started[0], ManagedWorkerState.FAILED, "no such partition")]
        # After its back-off it tries again, and forgets the failure once reported for a while.
        scheduler.heartbeat(until=lambda beat: len(engine.started) >= 2)
        scheduler.heartbeat(until=lambda beat: engine.started[0] in engine.forgotten)
        engine.refuse_all = False
        scheduler.heartbeat(until=lambda beat: len(names(beat)) == 1, timeout=15)
    finally:
        manager.stop()
        thread.join(10)


@pytest.mark.timeout(30)
def test_a_restarted_manager_counts_the_workers_it_adopts(scheduler) -> None:
    engine = MemoryEngine(adopted=("mem.old1", "mem.old2"))
    manager = WorkerManager(scheduler.address, engine, "mem", 2, 4, poll_interval_seconds=0.2)
    thread = run_manager(manager)
    try:
        beat = scheduler.heartbeat()
        assert names(beat) == {"mem.old1", "mem.old2"}
        time.sleep(0.5)
        assert engine.started == []
    finally:
        manager.stop()
        thread.join(10)


class BrokenEngine(MemoryEngine):
    def adopt(self) -> list[str]:
        raise OSError("squeue: cannot reach slurmctld")


@pytest.mark.timeout(30)
def test_a_manager_that_cannot_read_its_engine_at_start_stops_rather_than_start_a_second_fleet(scheduler) -> None:
    engine = BrokenEngine()
    manager = WorkerManager(scheduler.address, engine, "mem", 2, 4, poll_interval_seconds=0.2)
    manager.run()  # returns at once
    assert manager.failure is not None and "cannot reach slurmctld" in manager.failure
    assert engine.started == []
