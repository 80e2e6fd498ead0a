"""What the worker manager tests share: a real scheduler process, waiting for named workers, a drain check."""

from __future__ import annotations

import contextlib
import datetime
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cloudpickle
import zmq

from scaler import Client
from scaler.io.sockets import free_tcp_address
from scaler.protocol.codec import decode, encode_one
from scaler.protocol.messages import Message, WorkerManagerCommand, WorkerManagerHeartbeat
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
