"""What the worker manager tests share: a real scheduler process, waiting for named workers, a drain check."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cloudpickle
import zmq

from scaler import Client
from scaler.io.sockets import free_tcp_address
from scaler.protocol.codec import decode, encode_one
from scaler.protocol.messages import Message, WorkerManagerCommand, WorkerManagerHeartbeat
from scaler.worker_manager.adapter import EngineAdapter
from scaler.worker_manager.manager import WorkerManager
from tests.managers import manager_tasks

cloudpickle.register_pickle_by_value(manager_tasks)  # workers need not import the tests package


@contextlib.contextmanager
def scheduler_process(log: Path, *flags: str) -> Iterator[str]:
    """``scaler_scheduler`` on a free loopback port, stopped at the end; yields its address."""
    address = free_tcp_address()
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "scaler.cli.scheduler", address, "--logging-level=INFO", *flags],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield address
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for_names(client: Client, names: set[str], timeout: float = 60.0) -> float:
    """Run short tasks until each worker in ``names`` has run one; return how long that took."""
    started = time.monotonic()
    seen: set[str] = set()
    while not names <= seen:
        assert time.monotonic() - started < timeout, f"workers {sorted(names - seen)} never ran a task"
        futures = [client.submit(manager_tasks.worker_name, 0.05) for _ in range(2 * len(names))]
        seen |= {future.result(timeout=timeout) for future in futures}
    return time.monotonic() - started


def started_marks(directory: Path) -> list[tuple[int, str]]:
    """``(index, worker)`` of each ``marked_sleep`` start written to ``directory``."""
    marks = []
    for path in directory.iterdir():
        _, index, rest = path.name.split("-", 2)
        marks.append((int(index), rest.rsplit("-", 1)[0]))
    return marks


def wait_mark_on(directory: Path, worker: str, timeout: float = 60.0) -> int:
    """Wait until a ``marked_sleep`` task starts on ``worker``; its index."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for index, name in started_marks(directory):
            if name == worker:
                return index
        time.sleep(0.02)
    raise AssertionError(f"no task started on {worker}")


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def env_with_worktree() -> dict[str, str]:
    """This environment, with the scaler under test first on PYTHONPATH (for processes the tests start)."""
    root = str(Path(__file__).resolve().parents[2])
    path = os.environ.get("PYTHONPATH", "")
    return dict(os.environ, PYTHONPATH=root + (os.pathsep + path if path else ""))


def connected_times(log: Path, names: set[str], timeout: float = 60.0) -> dict[str, float]:
    """Wait until the scheduler's log says each worker in ``names`` connected; the wall time of each line."""
    deadline = time.monotonic() + timeout
    found: dict[str, float] = {}
    while True:
        for line in log.read_text(errors="replace").splitlines():
            if " connected with capabilities" not in line or "worker worker|" not in line:
                continue
            name = line.split("worker worker|", 1)[1].split("|", 1)[0]
            if name in names and name not in found:
                stamp = datetime.datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f")
                found[name] = stamp.timestamp()
        if set(found) >= names:
            return found
        assert time.monotonic() < deadline, f"workers {sorted(names - set(found))} never connected"
        time.sleep(0.05)


class FakeScheduler:
    """A real ROUTER socket playing the scheduler's part for a manager: reads its heartbeats, sends it commands."""

    def __init__(self) -> None:
        self.context: zmq.Context = zmq.Context()
        self.router = self.context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.address = free_tcp_address()
        self.router.bind(self.address)
        self.peer: bytes | None = None

    def heartbeat(
        self, timeout: float = 10.0, until: Callable[[WorkerManagerHeartbeat], bool] = lambda beat: True
    ) -> WorkerManagerHeartbeat:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.router.poll(100):
                peer, frame = self.router.recv_multipart()
                self.peer = peer
                messages: list[Message] = decode(frame)
                for message in messages:
                    assert isinstance(message, WorkerManagerHeartbeat)
                    if until(message):
                        return message
        raise AssertionError("no matching heartbeat")

    def send(self, command: WorkerManagerCommand) -> None:
        assert self.peer is not None
        self.router.send_multipart([self.peer, encode_one(command)])

    def close(self) -> None:
        self.router.close()
        self.context.term()


@dataclasses.dataclass
class CycleFigures:
    """What ``scale_cycle`` measured, in seconds."""

    connected: float  # target N sent -> the N workers connected to the scheduler
    busy_stop: float  # a stop of a worker running a task -> it left the manager's heartbeat
    idle_stop: float  # a stop of the idle rest -> none left in the heartbeat


def scale_cycle(
    adapter: EngineAdapter, manager_name: str, address: str, log: Path, marks: Path, n: int
) -> CycleFigures:
    """Drive a manager through 0 -> ``n`` -> ``n - 1`` (a busy worker drains) -> 0, playing the scheduler's part.

    The manager talks to a ``FakeScheduler`` (the test sends its commands); its workers, started by
    ``adapter``, serve the real scheduler at ``address``, whose log is ``log``. Checks that no task
    is lost or started twice and that the stopped worker's running task finished there.
    """
    fake = FakeScheduler()
    manager = WorkerManager(fake.address, adapter, manager_name, 0, n, poll_interval_seconds=0.3)
    thread = threading.Thread(target=manager.run, daemon=True)
    thread.start()
    try:
        assert fake.heartbeat().workers == []
        asked = time.time()
        fake.send(WorkerManagerCommand(target=n, stop_workers=[]))
        beat = fake.heartbeat(until=lambda beat: len(beat.workers) == n)
        names = {record.worker_name for record in beat.workers}
        connected = max(connected_times(log, names).values()) - asked
        with Client(address=address, timeout_seconds=60, heartbeat_interval_seconds=0.5) as client:
            wait_for_names(client, names)
            futures = [client.submit(manager_tasks.marked_sleep, str(marks), i, 1.0) for i in range(3 * n)]
            victim = sorted(names)[0]
            running = wait_mark_on(marks, victim)
            fake.send(WorkerManagerCommand(target=n - 1, stop_workers=[victim]))
            stopped_at = time.monotonic()
            fake.heartbeat(until=lambda beat: victim not in {r.worker_name for r in beat.workers}, timeout=60)
            busy_stop = time.monotonic() - stopped_at
            results = [future.result(timeout=90) for future in futures]
            assert [index for index, _ in results] == list(range(3 * n)), "no task lost"
            assert dict(results)[running] == victim, "the task running at the stop finished where it ran"
            rest = sorted(names - {victim})
            fake.send(WorkerManagerCommand(target=0, stop_workers=rest))
            stopped_at = time.monotonic()
            beat = fake.heartbeat(until=lambda beat: not beat.workers, timeout=60)
            idle_stop = time.monotonic() - stopped_at
        assert sorted(index for index, _ in started_marks(marks)) == list(range(3 * n)), "none started twice"
        assert manager.state.statistics()["failed"] == 0
    finally:
        manager.stop()
        thread.join(15)
        fake.close()
    return CycleFigures(connected, busy_stop, idle_stop)
