"""The status feed's pure part: the scheduler's counters, its event recorder, and its snapshot.

``StatusRecorder`` lives in the core (``SchedulerBook._status``). It keeps the totals a snapshot
reports (tasks submitted, finished, failed, cancelled, retried since start) whether or not anyone
watches, and, only while the shell says a subscriber listens (``recording``), the events since
they were last taken: one tuple per event, appended in the handler that saw it. ``take_events``
turns them into one ``StatusEvents`` (the shell calls it at the end of a turn, at most every few
tens of milliseconds; see ``server.py``). A start is held back until then (``starting``): an
attempt that also ended before the events are taken sends only its end, whose queue wait, run
time and worker say when and where it started. That spares a third of the events of short tasks,
which are most of a busy cluster's; a subscriber sees a ``STARTED`` event for every attempt still
running when the events leave. Tuples, not ``TaskEventRecord``s: the msgpack packer
writes a tuple exactly as it writes a record, and building a dataclass per event would cost the
scheduler more than the rest of the feed together; the reader decodes them into typed records as
usual. A message keeps at most ``limit`` events, and counts the rest in ``dropped``.

``build_snapshot`` computes a ``StatusSnapshot`` from the stores at ``now``: no socket, no clock.
The figures only the process knows (CPU, RSS, uptime, message rates, what the monitor socket
dropped) come from the shell as ``ShellFigures``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from scaler.about import __version__
from scaler.protocol.messages import (
    ClientStatus,
    Message,
    PeerEventKind,
    PeerEventRecord,
    RunningTask,
    SchedulerStatus,
    StatusEvents,
    StatusSnapshot,
    TaskEventKind,
    TaskEventRecord,
    TaskResult,
    TaskStatus,
    WorkerState,
    WorkerStatus,
)
from scaler.scheduler.clients import ClientRecord
from scaler.scheduler.object_store import ObjectStore
from scaler.scheduler.task_table import TaskRecord, TaskState
from scaler.scheduler.workers import WorkerRecord

MAX_EVENTS_PER_TURN = 20_000  # events past this in one message are counted in ``dropped``, not sent (~2.4 MB)
LOST_AFTER_INTERVALS = 3.0  # a worker whose heartbeat is this many intervals late shows as LOST
DEFAULT_HEARTBEAT_INTERVAL = 2.0  # assumed until a worker's second heartbeat shows its own

# Plain ints: the packer writes them a little faster than IntEnum members.
_SUBMITTED = int(TaskEventKind.SUBMITTED)
_STARTED = int(TaskEventKind.STARTED)
_FINISHED = int(TaskEventKind.FINISHED)
_FAILED = int(TaskEventKind.FAILED)
_CANCELLED = int(TaskEventKind.CANCELLED)
_RETRIED = int(TaskEventKind.RETRIED)
_SUCCESS = TaskStatus.SUCCESS

TASK_STATES = ("waiting", "queued", "assigned", "running", "balancing", "canceling")
TOTALS = ("submitted", "finished", "failed", "cancelled", "retried")


@dataclass(frozen=True, slots=True)
class ShellFigures:
    """What the scheduler's shell measures about its process, for the snapshot."""

    uptime_seconds: float = 0.0
    cpu_percent: float = 0.0
    rss_bytes: int = 0
    messages_in_per_second: float = 0.0
    messages_out_per_second: float = 0.0
    feed_dropped: int = 0
    wall_offset: float = 0.0  # epoch seconds minus the core's clock, so that wall = now + offset


class StatusRecorder:
    """Totals since start, and the events of the current turn while someone listens; see the module docstring."""

    __slots__ = ("recording", "limit", "tasks", "starting", "peers", "dropped", "submitted", "finished", "failed",
                 "cancelled", "retried")  # fmt: skip

    def __init__(self, limit: int = MAX_EVENTS_PER_TURN) -> None:
        self.recording = False  # set by the shell: a subscriber listens
        self.limit = limit
        self.tasks: list[tuple[Any, ...]] = []
        self.starting: dict[bytes, TaskRecord] = {}  # attempts started since the events were last taken
        self.peers: list[tuple[Any, ...]] = []
        self.dropped = 0
        self.submitted = 0
        self.finished = 0
        self.failed = 0
        self.cancelled = 0
        self.retried = 0

    # -- what happens to tasks (the handlers call these) ------------------------------------------

    # The three calls every task makes (submitted, started, ended) build their tuple inline: a
    # call to a shared helper would cost a third of what the event costs.

    def submitted_task(self, record: TaskRecord, now: float) -> None:
        """A task was accepted (a plain task, or a graph node)."""
        self.submitted += 1
        if self.recording:
            tasks = self.tasks
            if len(tasks) < self.limit:
                task = record.task
                name = task.function_name
                tasks.append((_SUBMITTED, now, task.task_id, record.client, b"", name, 0, 0.0, 0.0, 0, ""))
            else:
                self.dropped += 1

    def started_task(self, record: TaskRecord, now: float) -> None:
        """The current attempt began on its worker (``now`` is ``record.started_at``): held until taken."""
        if self.recording:
            self.starting[record.task.task_id] = record

    def retried_task(self, record: TaskRecord, now: float, why: str) -> None:
        """Its worker or processor died while it ran, and it is queued again."""
        self.retried += 1
        if self.recording:
            self.starting.pop(record.task.task_id, None)  # its end says when it started
            started = record.started_at
            wait, run = (0.0, 0.0) if started is None else (started - record.submitted_at, now - started)
            self._task(_RETRIED, now, record, record.worker or b"", wait, run, 0, why)

    def ended_task(self, record: TaskRecord, outcome: Message | None, client: ClientRecord | None, now: float) -> None:
        """The task ended with ``outcome``: a ``TaskResult``, a cancel confirmation, or nothing (its client left)."""
        if type(outcome) is TaskResult:
            if outcome.status is _SUCCESS:
                kind = _FINISHED
                self.finished += 1
                if client is not None:
                    client.done += 1
            else:
                kind = _FAILED
                self.failed += 1
                if client is not None:
                    client.failed += 1
        else:
            kind = _CANCELLED
            self.cancelled += 1
            if client is not None:
                client.cancelled += 1
        if not self.recording:
            return
        self.starting.pop(record.task.task_id, None)  # its end says when it started
        started = record.started_at
        wait, run = (0.0, 0.0) if started is None else (started - record.submitted_at, now - started)
        if kind == _FINISHED:
            tasks = self.tasks
            if len(tasks) < self.limit:
                task, worker, peak = record.task, record.worker or b"", outcome.peak_memory_bytes  # type: ignore[union-attr]
                name, attempt = task.function_name, record.attempt
                tasks.append((kind, now, task.task_id, record.client, worker, name, attempt, wait, run, peak, ""))
            else:
                self.dropped += 1
        elif kind == _FAILED:
            result = cast(TaskResult, outcome)
            self._task(kind, now, record, record.worker or b"", wait, run, result.peak_memory_bytes, result.status.name)
        else:
            self._task(kind, now, record, record.worker or b"", wait, run, 0, "")

    def _task(
        self, kind: int, now: float, record: TaskRecord, worker: bytes, wait: float, run: float, peak: int, detail: str
    ) -> None:
        if len(self.tasks) >= self.limit:
            self.dropped += 1
            return
        task = record.task
        name, attempt = task.function_name, record.attempt
        self.tasks.append((kind, now, task.task_id, record.client, worker, name, attempt, wait, run, peak, detail))

    # -- workers and clients ------------------------------------------------------------------------

    def peer(self, kind: PeerEventKind, now: float, peer_id: bytes, detail: str = "") -> None:
        """A worker or a client came, went, or began draining."""
        if not self.recording:
            return
        if len(self.peers) >= self.limit:
            self.dropped += 1
            return
        self.peers.append((int(kind), now, peer_id, detail))

    # -- the shell's side ---------------------------------------------------------------------------

    def set_recording(self, recording: bool) -> None:
        """Record events (a subscriber listens) or not; turning it off forgets what was pending."""
        self.recording = recording
        if not recording:
            self.tasks, self.starting, self.peers, self.dropped = [], {}, [], 0

    def take_events(self, now: float, wall_time: float) -> StatusEvents | None:
        """This turn's events as one message (None if there were none), and start the next turn afresh."""
        if self.starting:
            self._add_starts()
        if not (self.tasks or self.peers or self.dropped):
            return None
        tasks = cast(list[TaskEventRecord], self.tasks)  # tuples: see the module docstring
        peers = cast(list[PeerEventRecord], self.peers)
        events = StatusEvents(now, wall_time, tasks, peers, self.dropped)
        self.tasks, self.peers, self.dropped = [], [], 0
        return events

    def _add_starts(self) -> None:
        """A ``STARTED`` event for each attempt that began since the last take and still runs."""
        starting, self.starting = self.starting, {}
        for record in starting.values():  # in the order they started: a dict keeps insertion order
            at = cast(float, record.started_at)
            self._task(_STARTED, at, record, record.worker or b"", at - record.submitted_at, 0.0, 0, "")

    def totals(self) -> dict[str, int]:
        """Tasks submitted, finished, failed, cancelled and retried since the scheduler started."""
        return {name: getattr(self, name) for name in TOTALS}


def worker_state(worker: WorkerRecord, now: float) -> WorkerState:
    """ACTIVE, DRAINING, or LOST when its heartbeat is over ``LOST_AFTER_INTERVALS`` intervals late."""
    interval = worker.heartbeat_interval or DEFAULT_HEARTBEAT_INTERVAL
    if now - worker.heartbeat_at > LOST_AFTER_INTERVALS * interval:
        return WorkerState.LOST
    return WorkerState.DRAINING if worker.leaving else WorkerState.ACTIVE


def build_snapshot(
    now: float,
    shell: ShellFigures,
    scheduler_id: bytes,
    clients: Mapping[bytes, ClientRecord],
    workers: Mapping[bytes, WorkerRecord],
    tasks: Mapping[bytes, TaskRecord],
    objects: ObjectStore,
    recorder: StatusRecorder,
    request_id: int = 0,
) -> StatusSnapshot:
    """The whole cluster at ``now``, from the stores; see the module docstring."""
    by_state = dict.fromkeys(TASK_STATES, 0)
    per_client: dict[bytes, list[int]] = {client_id: [0, 0] for client_id in clients}  # queued, running
    waiting, queued, assigned, balancing, canceling = (
        TaskState.WAITING,
        TaskState.QUEUED,
        TaskState.ASSIGNED,
        TaskState.BALANCING,
        TaskState.CANCELING,
    )
    names = {waiting: "waiting", queued: "queued", balancing: "balancing", canceling: "canceling"}
    for record in tasks.values():
        state = record.state
        if state is assigned:
            by_state["running" if record.started else "assigned"] += 1
        else:
            by_state[names[state]] += 1
        counts = per_client.get(record.client)
        if counts is not None:
            counts[1 if record.started else 0] += 1
    scheduler = SchedulerStatus(
        scheduler_id,
        __version__,
        shell.uptime_seconds,
        shell.cpu_percent,
        shell.rss_bytes,
        shell.messages_in_per_second,
        shell.messages_out_per_second,
        by_state,
        recorder.totals(),
        len(objects),
        objects.total_bytes(),
        shell.feed_dropped,
    )
    client_status = [
        ClientStatus(
            client_id,
            per_client[client_id][0],
            per_client[client_id][1],
            client.done,
            client.failed,
            client.cancelled,
            client.credits_held,
            max(0.0, now - client.connected_since),
        )
        for client_id, client in clients.items()
    ]
    return StatusSnapshot(
        request_id,
        now,
        now + shell.wall_offset,
        scheduler,
        client_status,
        [_worker_status(worker_id, worker, tasks, now) for worker_id, worker in workers.items()],
    )


def _worker_status(
    worker_id: bytes, worker: WorkerRecord, tasks: Mapping[bytes, TaskRecord], now: float
) -> WorkerStatus:
    running: list[RunningTask] = []
    queued = 0
    for task_id in worker.tasks:
        record = tasks[task_id]
        if record.started and record.started_at is not None:
            running.append(RunningTask(task_id, record.task.function_name, record.client, now - record.started_at))
        else:
            queued += 1
    heartbeat = worker.heartbeat
    return WorkerStatus(
        worker_id,
        worker_state(worker, now),
        dict(worker.capabilities),
        queued,
        running,
        heartbeat.processors_running if heartbeat is not None else 0,
        heartbeat.processors_parked if heartbeat is not None else 0,
        heartbeat.processors_idle if heartbeat is not None else 0,
        heartbeat.cpu_percent if heartbeat is not None else 0.0,
        heartbeat.rss_bytes if heartbeat is not None else 0,
        max(0.0, now - worker.heartbeat_at),
        worker.done,
    )
