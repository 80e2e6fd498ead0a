"""The status feed's pure part: events and snapshots from ``SchedulerState``, fed by hand at a fake time.

No sockets and no clock: each test feeds messages and ticks in, then reads ``status(now)`` and
``take_events(...)``. The hypothesis machine in ``test_scheduler_stateful.py`` checks the feed
against the state under random interleavings; these are the worked examples.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaler.protocol.codec import decode, encode_one
from scaler.protocol.content_id import content_id
from scaler.protocol.messages import (
    ClientDisconnect,
    ClientHeartbeat,
    DisconnectRequest,
    DisconnectType,
    PeerEventKind,
    PeerEventRecord,
    RunningTask,
    StatusEvents,
    StatusRequest,
    StatusSnapshot,
    Task,
    TaskCancel,
    TaskEventKind,
    TaskEventRecord,
    TaskResult,
    TaskStarted,
    TaskStatus,
    WorkerHeartbeat,
    WorkerState,
)
from scaler.scheduler.state import SchedulerConfig, SchedulerState, Send
from scaler.scheduler.status import ShellFigures, StatusRecorder

C1, C2 = b"client-1", b"client-2"
W1, W2 = b"worker-1", b"worker-2"
FN_BYTES = b"pickled-function"
FN = content_id(FN_BYTES)


def task(task_id: bytes, name: str = "module.work", profiling: bool = False) -> Task:
    sent = Task(task_id, FN, FN_BYTES, [], 0, function_name=name)
    sent.profiling = profiling
    return sent


def heartbeat(now: float, running: int = 0, parked: int = 0, idle: int = 1) -> WorkerHeartbeat:
    return WorkerHeartbeat(now, 0, 12.5, 1 << 20, {"gpu": 1}, running, parked, idle)


class Feed:
    """A core with events on, fed at a fake time; every step validates the state."""

    def __init__(self, **settings: object) -> None:
        config = SchedulerConfig(max_number_of_tasks_waiting=0, **settings)  # type: ignore[arg-type]
        self.state = SchedulerState(config, scheduler_id=b"s-1")
        self.state.record_events(True)
        self.now = 0.0

    def at(self, now: float) -> Feed:
        self.now = now
        return self

    def handle(self, source: bytes, message: object) -> list[object]:
        out = self.state.handle(source, message, self.now)  # type: ignore[arg-type]
        self.state.validate()
        return list(out)

    def tick(self, now: float) -> None:
        self.now = now
        self.state.tick(now)
        self.state.validate()

    def events(self) -> StatusEvents:
        """This turn's events, through the codec: what a subscriber decodes."""
        events = self.state.take_events(self.now, 1000.0 + self.now)
        assert events is not None
        (decoded,) = decode(encode_one(events))
        assert isinstance(decoded, StatusEvents)
        return decoded

    def dispatched_to(self, out: list[object], worker: bytes) -> list[Task]:
        return [i.message for i in out if isinstance(i, Send) and i.to == worker and isinstance(i.message, Task)]


@pytest.fixture
def feed() -> Feed:
    return Feed()


def test_an_empty_scheduler(feed: Feed) -> None:
    feed.state.set_shell_figures(ShellFigures(uptime_seconds=3.0, cpu_percent=1.5, rss_bytes=10, wall_offset=100.0))
    snapshot = feed.state.status(5.0)
    assert (snapshot.request_id, snapshot.now, snapshot.wall_time) == (0, 5.0, 105.0)
    assert snapshot.scheduler.scheduler_id == b"s-1" and snapshot.scheduler.uptime_seconds == 3.0
    assert snapshot.scheduler.tasks_by_state == dict.fromkeys(
        ("waiting", "queued", "assigned", "running", "balancing", "canceling"), 0
    )
    assert snapshot.scheduler.tasks_total == dict.fromkeys(
        ("submitted", "finished", "failed", "cancelled", "retried"), 0
    )
    assert (snapshot.clients, snapshot.workers) == ([], [])
    assert feed.state.take_events(5.0, 105.0) is None
    (decoded,) = decode(encode_one(snapshot))
    assert decoded == snapshot


def test_one_task_from_submission_to_its_result(feed: Feed) -> None:
    feed.at(1.0).handle(W1, heartbeat(1.0))
    feed.at(2.0).handle(C1, ClientHeartbeat(2.0))
    (sent,) = feed.dispatched_to(feed.at(3.0).handle(C1, task(b"t1")), W1)
    assert sent.function_name == ""  # workers need no name: the record keeps it
    events = feed.events()
    assert [(p.kind, p.peer_id) for p in events.peers] == [
        (PeerEventKind.WORKER_JOINED, W1),
        (PeerEventKind.CLIENT_JOINED, C1),
    ]
    assert events.tasks == [
        TaskEventRecord(TaskEventKind.SUBMITTED, 3.0, b"t1", C1, b"", "module.work", 0, 0.0, 0.0, 0, "")
    ]
    snapshot = feed.state.status(3.5)
    assert snapshot.scheduler.tasks_by_state["assigned"] == 1
    (worker,) = snapshot.workers
    assert (worker.queued, worker.running, worker.capabilities) == (1, [], {"gpu": 1})

    feed.at(4.0).handle(W1, TaskStarted(b"t1", 1))
    (started,) = feed.events().tasks
    assert (started.kind, started.worker_id, started.queue_wait_seconds, started.attempt) == (
        TaskEventKind.STARTED,
        W1,
        1.0,
        1,
    )
    snapshot = feed.state.status(6.0)
    assert snapshot.scheduler.tasks_by_state["running"] == 1
    (worker,) = snapshot.workers
    assert worker.queued == 0 and worker.running == [RunningTask(b"t1", "module.work", C1, 2.0)]
    (client,) = snapshot.clients
    assert (client.queued, client.running, client.connected_seconds) == (0, 1, 4.0)

    out = feed.at(7.0).handle(W1, TaskResult(b"t1", TaskStatus.SUCCESS, b"r", 1, peak_memory_bytes=99))
    assert Send(C1, TaskResult(b"t1", TaskStatus.SUCCESS, b"r", 1, peak_memory_bytes=99)) in out
    (finished,) = feed.events().tasks
    assert (finished.kind, finished.queue_wait_seconds, finished.run_seconds, finished.peak_memory_bytes) == (
        TaskEventKind.FINISHED,
        1.0,
        3.0,
        99,
    )
    snapshot = feed.state.status(8.0)
    assert snapshot.scheduler.tasks_total == {"submitted": 1, "finished": 1, "failed": 0, "cancelled": 0, "retried": 0}
    assert (snapshot.clients[0].done, snapshot.workers[0].done) == (1, 1)


def test_the_scheduler_fills_in_its_share_of_a_profile(feed: Feed) -> None:
    feed.at(0.0).handle(W1, heartbeat(0.0))
    feed.at(1.0).handle(C1, task(b"t1", profiling=True))  # sent to W1 at 1.0
    feed.at(1.5).handle(W1, TaskStarted(b"t1", 1))
    out = feed.at(2.0).handle(W1, TaskResult(b"t1", TaskStatus.SUCCESS, b"r", 1))
    (result,) = [i.message for i in out if isinstance(i, Send) and isinstance(i.message, TaskResult)]
    assert (result.queue_wait_seconds, result.transfer_seconds) == (0.5, 0.5)
    feed.at(3.0).handle(C1, task(b"t2"))  # without profiling: zeros
    feed.at(4.0).handle(W1, TaskStarted(b"t2", 1))
    out = feed.at(5.0).handle(W1, TaskResult(b"t2", TaskStatus.SUCCESS, b"r", 1))
    (result,) = [i.message for i in out if isinstance(i, Send) and isinstance(i.message, TaskResult)]
    assert (result.queue_wait_seconds, result.transfer_seconds) == (0.0, 0.0)


def test_failures_cancels_and_retries_are_counted_and_reported() -> None:
    feed = Feed(max_task_retries=1)
    feed.at(0.0).handle(W1, heartbeat(0.0))
    feed.handle(W2, heartbeat(0.0))
    for task_id in (b"t1", b"t2", b"t3"):
        feed.handle(C1, task(task_id))
    feed.events()
    feed.at(1.0).handle(W1, TaskStarted(b"t1", 1))
    feed.handle(W2, TaskStarted(b"t2", 1))
    feed.at(2.0).handle(W1, TaskResult(b"t1", TaskStatus.FAILED, b"boom", 1))
    feed.at(3.0).handle(C1, TaskCancel(b"t3"))  # queued on W1, not started: the worker is asked
    feed.state.worker_disconnected(W2)  # it ran t2: a retry
    events = feed.events()
    kinds = [(event.kind, event.task_id) for event in events.tasks]
    assert (TaskEventKind.FAILED, b"t1") in kinds and (TaskEventKind.RETRIED, b"t2") in kinds
    (failed,) = [event for event in events.tasks if event.kind is TaskEventKind.FAILED]
    assert failed.detail == "FAILED" and failed.run_seconds == 1.0
    (retried,) = [event for event in events.tasks if event.kind is TaskEventKind.RETRIED]
    assert retried.worker_id == W2 and retried.detail == "its worker died"
    assert [(p.kind, p.peer_id) for p in events.peers] == [(PeerEventKind.WORKER_DIED, W2)]
    totals = feed.state.status(3.0).scheduler.tasks_total
    assert (totals["failed"], totals["retried"], totals["cancelled"]) == (1, 1, 0)
    feed.handle(C1, ClientDisconnect(DisconnectType.DISCONNECT))  # its tasks are cancelled
    events = feed.events()
    assert {event.task_id for event in events.tasks if event.kind is TaskEventKind.CANCELLED} <= {b"t2", b"t3"}
    assert [(p.kind, p.peer_id) for p in events.peers] == [(PeerEventKind.CLIENT_LEFT, C1)]


def test_worker_states_draining_lost_and_gone() -> None:
    feed = Feed(worker_timeout_seconds=30.0)
    feed.at(0.0).handle(W1, heartbeat(0.0))
    feed.at(1.0).handle(W1, heartbeat(1.0))  # W1's heartbeats come every second
    feed.handle(W2, heartbeat(1.0))  # W2's interval is not known yet: 2 s is assumed
    assert [(w.worker_id, w.state) for w in feed.state.status(2.0).workers] == [
        (W1, WorkerState.ACTIVE),
        (W2, WorkerState.ACTIVE),
    ]
    feed.handle(C1, task(b"t1"))
    assert feed.state.tasks[b"t1"].worker == W1  # the first of the least loaded
    feed.handle(W1, TaskStarted(b"t1", 1))
    feed.at(2.0).handle(W1, DisconnectRequest(drain=True))  # it keeps t1 until t1 ends
    assert feed.state.status(2.5).workers[0].state is WorkerState.DRAINING
    assert (PeerEventKind.WORKER_DRAINING, W1) in [(p.kind, p.peer_id) for p in feed.events().peers]
    feed.at(4.5).handle(W2, heartbeat(4.5))
    status = {w.worker_id: w for w in feed.state.status(4.5).workers}
    # W1 last sent a heartbeat at 1.0: 3.5 s is more than 3 intervals of 1 s.
    assert status[W1].state is WorkerState.LOST and status[W1].heartbeat_age_seconds == 3.5
    assert status[W2].state is WorkerState.ACTIVE
    # W2's one gap so far was 3.5 s: it is lost 3 such gaps after its last heartbeat, not before.
    assert [w.state for w in feed.state.status(14.5).workers] == [WorkerState.LOST, WorkerState.ACTIVE]
    assert [w.state for w in feed.state.status(15.5).workers] == [WorkerState.LOST, WorkerState.LOST]
    feed.tick(40.0)  # past the worker timeout: both are gone, as dead
    assert feed.state.status(40.0).workers == []
    assert {p.peer_id for p in feed.events().peers if p.kind is PeerEventKind.WORKER_DIED} == {W1, W2}


def test_heartbeat_figures_reach_the_snapshot(feed: Feed) -> None:
    feed.at(0.0).handle(W1, heartbeat(0.0, running=2, parked=1, idle=3))
    (worker,) = feed.state.status(0.5).workers
    assert (worker.processors_running, worker.processors_parked, worker.processors_idle) == (2, 1, 3)
    assert (worker.cpu_percent, worker.rss_bytes, worker.heartbeat_age_seconds) == (12.5, 1 << 20, 0.5)


def test_a_status_request_is_answered_with_its_id(feed: Feed) -> None:
    feed.at(1.0).handle(W1, heartbeat(1.0))
    out = feed.at(2.0).handle(C2, StatusRequest(41))
    (answer,) = [i for i in out if isinstance(i, Send) and isinstance(i.message, StatusSnapshot)]
    assert answer.to == C2 and answer.message.request_id == 41  # type: ignore[attr-defined]
    assert answer.message == dataclasses.replace(feed.state.status(2.0), request_id=41)


def test_an_attempt_that_ends_before_the_events_leave_sends_only_its_end(feed: Feed) -> None:
    feed.at(0.0).handle(W1, heartbeat(0.0))
    feed.handle(W2, heartbeat(0.0))
    for task_id in (b"t1", b"t2", b"t3"):
        feed.at(1.0).handle(C1, task(task_id))
    feed.events()  # the peers and the three submissions
    feed.at(2.0).handle(W1, TaskStarted(b"t1", 1))
    feed.at(2.5).handle(W2, TaskStarted(b"t2", 1))
    feed.at(3.0).handle(W1, TaskResult(b"t1", TaskStatus.SUCCESS, b"r", 1))
    events = feed.at(3.5).events()
    # t1 started and ended in this turn: its end alone, which says where and when it started
    assert [(e.kind, e.task_id) for e in events.tasks] == [
        (TaskEventKind.FINISHED, b"t1"),
        (TaskEventKind.STARTED, b"t2"),
    ]
    finished, started = events.tasks
    assert (finished.worker_id, finished.queue_wait_seconds, finished.run_seconds) == (W1, 1.0, 1.0)
    assert (started.time, started.worker_id, started.queue_wait_seconds, started.attempt) == (2.5, W2, 1.5, 1)
    feed.at(4.0).handle(W2, TaskResult(b"t2", TaskStatus.SUCCESS, b"r", 1))
    assert [(e.kind, e.task_id) for e in feed.events().tasks] == [(TaskEventKind.FINISHED, b"t2")]


def test_held_starts_leave_in_order_within_the_bound_and_go_when_recording_stops() -> None:
    feed = Feed(max_task_retries=1)
    feed.at(0.0).handle(W1, heartbeat(0.0, idle=4))
    for task_id in (b"t1", b"t2", b"t3"):
        feed.handle(C1, task(task_id))
    feed.events()
    for number, task_id in enumerate((b"t3", b"t1", b"t2")):
        feed.at(1.0 + number).handle(W1, TaskStarted(task_id, 1))
    feed.at(4.0).handle(W1, TaskResult(b"t1", TaskStatus.PROCESSOR_DIED, b"", 1))  # retried: its end stands for it
    events = feed.events()
    assert [(e.kind, e.task_id, e.time) for e in events.tasks] == [
        (TaskEventKind.RETRIED, b"t1", 4.0),
        (TaskEventKind.STARTED, b"t3", 1.0),
        (TaskEventKind.STARTED, b"t2", 3.0),
    ]
    recorder = feed.state._status  # the bound counts held starts when they leave
    recorder.limit = 1
    again = feed.state.tasks[b"t1"]  # queued on W1 again, as its next attempt
    assert again.worker == W1 and again.attempt == 2
    feed.at(5.0).handle(W1, TaskStarted(b"t1", again.attempt))
    feed.handle(C1, task(b"t4"))
    events = feed.events()
    assert [e.kind for e in events.tasks] == [TaskEventKind.SUBMITTED] and events.dropped == 1
    feed.handle(W1, TaskResult(b"t2", TaskStatus.SUCCESS, b"r", 1))
    feed.state.record_events(False)  # nobody listens: what was held is forgotten
    feed.state.record_events(True)
    assert feed.state.take_events(6.0, 6.0) is None


def test_nothing_is_recorded_while_nobody_listens_but_totals_are_kept(feed: Feed) -> None:
    feed.state.record_events(False)
    feed.at(0.0).handle(W1, heartbeat(0.0))
    feed.handle(C1, task(b"t1"))
    feed.handle(W1, TaskStarted(b"t1", 1))
    feed.handle(W1, TaskResult(b"t1", TaskStatus.SUCCESS, b"r", 1))
    assert feed.state.take_events(1.0, 1.0) is None
    assert feed.state.status(1.0).scheduler.tasks_total["finished"] == 1
    feed.state.record_events(True)
    feed.handle(C1, task(b"t2"))
    assert [event.task_id for event in feed.events().tasks] == [b"t2"]


@given(st.integers(0, 30), st.integers(1, 10))
def test_events_past_the_bound_are_counted_as_dropped(count: int, limit: int) -> None:
    recorder = StatusRecorder(limit=limit)
    recorder.set_recording(True)
    for number in range(count):
        recorder.peer(PeerEventKind.CLIENT_JOINED, float(number), b"c%d" % number)
    events = recorder.take_events(1.0, 2.0)
    if count == 0:
        assert events is None
        return
    assert events is not None
    assert len(events.peers) == min(count, limit) and events.dropped == max(0, count - limit)
    (decoded,) = decode(encode_one(events))
    assert isinstance(decoded, StatusEvents)
    assert decoded.peers[0] == PeerEventRecord(PeerEventKind.CLIENT_JOINED, 0.0, b"c0", "")
    assert recorder.take_events(1.0, 2.0) is None  # a new turn starts empty
