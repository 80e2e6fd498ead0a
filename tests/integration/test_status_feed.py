"""The scheduler's status feed and ``Client.status()`` on a real cluster (scheduler and workers on loopback)."""

from __future__ import annotations

import collections.abc
import functools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
import zmq

from scaler import Client, SchedulerClusterCombo
from scaler.io.sockets import free_tcp_address
from scaler.monitor.feed import StatusFeed, StatusMessage
from scaler.protocol.messages import (
    PeerEventKind,
    StatusEvents,
    StatusSnapshot,
    TaskEventKind,
    TaskEventRecord,
    WorkerState,
)
from scaler.scheduler.publisher import StatusPublisher, resolve_monitor_address
from tests.integration import tasks

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


class Reader:
    """Everything a ``StatusFeed`` received, kept, with a way to wait for something in it."""

    def __init__(self, feed: StatusFeed) -> None:
        self.feed = feed
        self.messages: list[StatusMessage] = []

    def until(self, found: Callable[[], object], timeout: float = 30.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not found():
            assert time.monotonic() < deadline, f"the feed never showed {what or found}"
            self.messages += self.feed.receive(0.1)

    def snapshots(self) -> list[StatusSnapshot]:
        return [message for message in self.messages if isinstance(message, StatusSnapshot)]

    def latest(self) -> StatusSnapshot:
        """The last snapshot received; an empty one before any arrived."""
        snapshots = self.snapshots()
        return snapshots[-1] if snapshots else StatusSnapshot(0, 0.0, 0.0, None, [], [])  # type: ignore[arg-type]

    def task_events(self, kind: TaskEventKind | None = None) -> list[TaskEventRecord]:
        events = [event for message in self.messages if isinstance(message, StatusEvents) for event in message.tasks]
        return [event for event in events if kind is None or event.kind is kind]

    def peer_events(self, kind: PeerEventKind) -> list[bytes]:
        return [
            event.peer_id
            for message in self.messages
            if isinstance(message, StatusEvents)
            for event in message.peers
            if event.kind is kind
        ]


@pytest.fixture
def cluster() -> collections.abc.Iterator[SchedulerClusterCombo]:
    """Two workers, with the feed on an explicit free port (never port + 2: another test's may hold it)."""
    with SchedulerClusterCombo(
        n_workers=2,
        monitor_address=free_tcp_address(),
        status_interval_seconds=0.2,
        logging_level="WARNING",
    ) as combo:
        yield combo


@pytest.fixture
def reader(cluster: SchedulerClusterCombo) -> collections.abc.Iterator[Reader]:
    assert cluster.monitor_address is not None
    with StatusFeed(cluster.monitor_address) as feed:
        yield Reader(feed)


def test_snapshots_and_events_follow_the_cluster(cluster: SchedulerClusterCombo, reader: Reader) -> None:
    reader.until(lambda: len(reader.latest().workers) == 2, what="two workers")
    first = reader.latest()
    assert first is not None and first.request_id == 0
    assert all(worker.state is WorkerState.ACTIVE for worker in first.workers)
    assert first.scheduler.tasks_total["finished"] == 0 and first.scheduler.uptime_seconds > 0
    assert abs(first.wall_time - time.time()) < 60
    reader.until(lambda: all(w.processors_idle >= 1 for w in reader.latest().workers), what="idle processors")

    with Client(cluster.get_address(), timeout_seconds=30) as client:
        futures = [client.submit(tasks.noop, i) for i in range(50)]
        slow = client.submit(tasks.sleep_return, 2.0, "slept")
        assert [future.result(timeout=60) for future in futures] == list(range(50))
        reader.until(  # a snapshot taken after the no-ops ended: only the slow task runs
            lambda: (
                [task.function_name for worker in reader.latest().workers for task in worker.running]
                == ["tests.integration.tasks.sleep_return"]
            ),
            what="the slow task running alone in a snapshot",
        )
        snapshot = reader.latest()
        assert snapshot is not None
        (running,) = [task for worker in snapshot.workers for task in worker.running]
        assert running.function_name == "tests.integration.tasks.sleep_return"
        assert running.client_id in {c.client_id for c in snapshot.clients}
        assert slow.result(timeout=60) == "slept"
        client_id = running.client_id
        reader.until(
            lambda: reader.latest().scheduler.tasks_total["finished"] == 51,
            what="51 finished tasks",
        )
        snapshot = reader.latest()
        assert snapshot is not None
        (client_status,) = [c for c in snapshot.clients if c.client_id == client_id]
        assert (client_status.done, client_status.queued, client_status.running) == (51, 0, 0)
        assert sum(worker.done for worker in snapshot.workers) == 51
        assert snapshot.scheduler.tasks_total["submitted"] == 51
        assert snapshot.scheduler.messages_in_per_second >= 0

        for kind in (TaskEventKind.SUBMITTED, TaskEventKind.FINISHED):
            count = functools.partial(reader.task_events, kind)
            reader.until(lambda count=count: len(count()) >= 51, what=f"51 {kind.name} events")
        finished = reader.task_events(TaskEventKind.FINISHED)
        worker_ids = {worker.worker_id for worker in snapshot.workers}
        assert len({event.task_id for event in finished}) == 51
        assert all(event.worker_id in worker_ids and event.queue_wait_seconds >= 0 for event in finished)
        (slow_end,) = [event for event in finished if event.function_name.endswith("sleep_return")]
        assert slow_end.run_seconds >= 1.5
        # A start is sent for an attempt still running when the events leave (every 50 ms): the
        # 2 s task's, at least; the no-ops' ends may have come first and stand for their starts.
        started = reader.task_events(TaskEventKind.STARTED)
        assert slow_end.task_id in {event.task_id for event in started}
        assert {event.worker_id for event in started} <= worker_ids
        assert all(event.client_id == client_id and event.queue_wait_seconds >= 0 for event in started)
        assert {event.task_id for event in started} <= {event.task_id for event in finished}
        assert client_id in reader.peer_events(PeerEventKind.CLIENT_JOINED)
    reader.until(lambda: client_id in reader.peer_events(PeerEventKind.CLIENT_LEFT), what="the client leaving")
    reader.until(lambda: not reader.latest().clients, what="no client left in a snapshot")


def test_a_killed_worker_is_reported_dead(cluster: SchedulerClusterCombo, reader: Reader) -> None:
    reader.until(lambda: len(reader.latest().workers) == 2, what="two workers")
    snapshot = reader.latest()
    assert snapshot is not None
    worker_ids = {worker.worker_id for worker in snapshot.workers}
    victim = cluster.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    reader.until(lambda: reader.peer_events(PeerEventKind.WORKER_DIED), what="a worker's death")
    (dead,) = reader.peer_events(PeerEventKind.WORKER_DIED)
    assert dead in worker_ids and str(victim).encode() in dead  # worker identities carry their pid
    reader.until(lambda: len(reader.latest().workers) == 1, what="one worker left")


def test_client_status_answers_through_the_client_connection(cluster: SchedulerClusterCombo) -> None:
    with Client(cluster.get_address(), timeout_seconds=30) as client:
        deadline = time.monotonic() + 30
        while len(client.status().workers) < 2:
            assert time.monotonic() < deadline, "the workers never showed in Client.status()"
            time.sleep(0.1)
        future = client.submit(tasks.sleep_return, 1.5, 7)
        deadline = time.monotonic() + 30
        status = client.status()
        while not any(worker.running for worker in status.workers):
            assert time.monotonic() < deadline, "the task never showed as running"
            time.sleep(0.05)
            status = client.status()
        assert isinstance(status, StatusSnapshot) and status.request_id > 0
        (task,) = [task for worker in status.workers for task in worker.running]
        assert task.function_name.endswith("sleep_return") and task.running_seconds >= 0
        assert future.result(timeout=30) == 7
        assert client.status().scheduler.tasks_total["finished"] >= 1
    with pytest.raises(Exception, match="disconnected"):
        client.status()


def test_the_feed_can_be_turned_off() -> None:
    with SchedulerClusterCombo(n_workers=1, monitor_address="none", logging_level="WARNING") as combo:
        assert combo.monitor_address is None
        with Client(combo.get_address(), timeout_seconds=30) as client:
            assert client.submit(tasks.noop, 3).result(timeout=30) == 3
            assert client.status().scheduler.tasks_total["finished"] == 1


def test_the_publisher_knows_its_subscribers_and_never_waits_for_a_slow_one() -> None:
    context: zmq.Context[Any] = zmq.Context()
    address = free_tcp_address()
    publisher = StatusPublisher(context, address)
    reader = context.socket(zmq.SUB)
    try:
        assert not publisher.subscribed()
        reader.setsockopt(zmq.RCVHWM, 1)
        reader.setsockopt(zmq.SUBSCRIBE, b"")
        reader.connect(address)
        deadline = time.monotonic() + 10
        while not publisher.subscribed():
            assert time.monotonic() < deadline, "the subscription never showed"
            time.sleep(0.01)
        # The reader never reads: once its queues are full, sends fail at once and are counted.
        frame = b"x" * 65536
        started = time.monotonic()
        results = [publisher.publish(frame) for _ in range(2000)]
        assert time.monotonic() - started < 5
        assert results[0] and not all(results) and publisher.dropped == results.count(False) > 0
        reader.close(linger=0)
        deadline = time.monotonic() + 10
        while publisher.subscribed():  # a reader that goes away unsubscribes
            assert time.monotonic() < deadline, "the reader's departure never showed"
            time.sleep(0.01)
    finally:
        reader.close(linger=0)
        publisher.close()
        context.term()


def test_the_default_monitor_address_sits_beside_the_scheduler() -> None:
    assert resolve_monitor_address("tcp://127.0.0.1:8516", None) == "tcp://127.0.0.1:8518"
    assert resolve_monitor_address("ipc:///tmp/s", None) == "ipc:///tmp/s.monitor"
    assert resolve_monitor_address("inproc://s", None) is None
    assert resolve_monitor_address("tcp://127.0.0.1:8516", "none") is None
    assert resolve_monitor_address("tcp://127.0.0.1:8516", "tcp://127.0.0.1:9") == "tcp://127.0.0.1:9"


def test_a_monitor_address_that_is_taken_stops_the_scheduler_with_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monitor = f"tcp://127.0.0.1:{taken.getsockname()[1]}"
        command = [sys.executable, "-m", "scaler.cli.scheduler", free_tcp_address(), "--monitor-address", monitor]
        finished = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2
    assert f"cannot publish the status feed on {monitor}" in finished.stderr and "Traceback" not in finished.stderr
