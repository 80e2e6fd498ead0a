"""Status feed messages for the dashboard's tests, and a fake scheduler feed (a plain zmq PUB socket).

``FakeCluster`` plays a scheduler with workers running tasks, as the feed shows it: it keeps its
own clock, and each ``step()`` returns the ``StatusEvents`` and ``StatusSnapshot`` of one second.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import zmq

from scaler.protocol.codec import encode
from scaler.protocol.messages import (
    ClientStatus,
    PeerEventKind,
    PeerEventRecord,
    RunningTask,
    SchedulerStatus,
    StatusEvents,
    StatusSnapshot,
    TaskEventKind,
    TaskEventRecord,
    WorkerState,
    WorkerStatus,
)

CLIENT = b"client|laptop|100|c0ffee00"


def task_event(
    kind: TaskEventKind,
    task_id: bytes,
    time_: float = 0.0,
    worker: bytes = b"",
    function: str = "work",
    client: bytes = CLIENT,
    attempt: int = 1,
    queue_wait: float = 0.0,
    run: float = 0.0,
    peak_memory: int = 0,
    detail: str = "",
) -> TaskEventRecord:
    """One task event record."""
    return TaskEventRecord(
        kind, time_, task_id, client, worker, function, attempt, queue_wait, run, peak_memory, detail
    )


def events(
    tasks: list[TaskEventRecord],
    now: float = 0.0,
    wall: float = 1_000_000.0,
    peers: list[PeerEventRecord] | None = None,
    dropped: int = 0,
) -> StatusEvents:
    """A ``StatusEvents`` message."""
    return StatusEvents(now, wall, tasks, peers or [], dropped)


def scheduler_status(totals: dict[str, int] | None = None, by_state: dict[str, int] | None = None) -> SchedulerStatus:
    """A scheduler's figures."""
    return SchedulerStatus(
        b"scheduler|test", "test", 12.0, 3.0, 50_000_000, 100.0, 100.0, by_state or {}, totals or {}, 0, 0, 0
    )


def worker_status(
    name: bytes, running: list[RunningTask] | None = None, cpu: float = 50.0, rss: int = 10**8
) -> WorkerStatus:
    """A worker's figures."""
    return WorkerStatus(name, WorkerState.ACTIVE, {}, 0, running or [], len(running or []), 0, 1, cpu, rss, 0.1, 0)


def snapshot(
    now: float = 0.0,
    wall: float = 1_000_000.0,
    workers: list[WorkerStatus] | None = None,
    clients: list[ClientStatus] | None = None,
    totals: dict[str, int] | None = None,
    by_state: dict[str, int] | None = None,
) -> StatusSnapshot:
    """A ``StatusSnapshot`` message."""
    return StatusSnapshot(0, now, wall, scheduler_status(totals, by_state), clients or [], workers or [])


class FakeCluster:
    """A pretend cluster: ``workers`` each run one task a step, cycling through ``functions``."""

    def __init__(self, workers: list[bytes], functions: tuple[str, ...] = ("square", "simulate", "load_csv")):
        self.workers = workers
        self.functions = functions
        self.now = 100.0
        self.started = time.time()
        self.count = 0
        self.running: dict[bytes, tuple[bytes, str, float]] = {}  # worker -> (task, function, start)
        self.totals = {"submitted": 0, "finished": 0, "failed": 0, "cancelled": 0, "retried": 0}
        self.joined = False

    def step(self, seconds: float = 1.0) -> list[StatusEvents | StatusSnapshot]:
        """One step of ``seconds``: each worker ends its task and starts another; events, then a snapshot."""
        self.now += seconds
        wall = time.time()
        records = []
        peers = []
        if not self.joined:
            self.joined = True
            peers = [PeerEventRecord(PeerEventKind.WORKER_JOINED, self.now, w, "") for w in self.workers]
            peers.append(PeerEventRecord(PeerEventKind.CLIENT_JOINED, self.now, CLIENT, ""))
        for worker in self.workers:
            if worker in self.running:
                task, function, start = self.running.pop(worker)
                kind = TaskEventKind.FAILED if self.count % 7 == 3 else TaskEventKind.FINISHED
                self.totals["failed" if kind == TaskEventKind.FAILED else "finished"] += 1
                detail = "FAILED" if kind == TaskEventKind.FAILED else ""
                records.append(
                    task_event(
                        kind,
                        task,
                        self.now - 0.1,
                        worker,
                        function,
                        run=self.now - 0.1 - start,
                        queue_wait=0.05,
                        peak_memory=2_000_000 + self.count * 1000,
                        detail=detail,
                    )
                )
            self.count += 1
            task = self.count.to_bytes(16, "big")
            function = self.functions[self.count % len(self.functions)]
            self.totals["submitted"] += 1
            records.append(task_event(TaskEventKind.SUBMITTED, task, self.now - 0.05, b"", function))
            records.append(task_event(TaskEventKind.STARTED, task, self.now, worker, function, queue_wait=0.05))
            self.running[worker] = (task, function, self.now)
        message_events = events(records, self.now, wall, peers)
        statuses = [
            worker_status(
                worker,
                [RunningTask(task, function, CLIENT, 0.0)],
                cpu=40.0 + 10 * (self.count % 5),
                rss=100_000_000 + 1_000_000 * (self.count % 9),
            )
            for worker, (task, function, _) in self.running.items()
        ]
        clients = [
            ClientStatus(
                CLIENT, 0, len(self.workers), self.totals["finished"], self.totals["failed"], 0, 0, self.now - 100
            )
        ]
        message_snapshot = snapshot(
            self.now, wall, statuses, clients, dict(self.totals), {"running": len(self.workers)}
        )
        return [message_events, message_snapshot]


class FakeFeedPublisher:
    """A zmq PUB socket at ``address`` publishing a ``FakeCluster``'s steps every ``interval`` seconds."""

    def __init__(self, address: str, cluster: FakeCluster, interval: float = 0.5):
        self.address = address
        self.cluster = cluster
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> FakeFeedPublisher:
        """Start publishing in a thread."""
        self._thread.start()
        return self

    def _run(self) -> None:
        context: zmq.Context[Any] = zmq.Context()
        socket = context.socket(zmq.PUB)
        socket.setsockopt(zmq.LINGER, 0)
        socket.bind(self.address)
        try:
            while not self._stop.wait(self.interval):
                for message in self.cluster.step(self.interval):
                    socket.send(encode([message]))
        finally:
            socket.close()
            context.term()

    def stop(self) -> None:
        """Stop publishing and close the socket."""
        self._stop.set()
        self._thread.join(timeout=5)
