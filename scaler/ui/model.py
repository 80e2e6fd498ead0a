"""What the dashboard knows about the cluster, built only from status feed messages (no I/O).

```
StatusFeed ──▶ DashboardModel.apply(StatusSnapshot | StatusEvents)
                 ├─ history      one point per snapshot: tasks/s, queued, running, workers, CPU, memory
                 ├─ workers      latest WorkerStatus each, with CPU and RSS sparklines
                 ├─ stream       recent task runs per worker (from FINISHED/FAILED/CANCELLED/RETRIED)
                 ├─ tasks        TaskTable, the bounded ring buffer of recent tasks (tasks.py)
                 ├─ clients      latest ClientStatus each
                 └─ peer events  workers and clients that came and went
JSON views ◀── overview() workers() stream() clients() tasks.query()
```

Every container is bounded (by count, and the series by ``history_seconds`` too), so the model's
memory does not grow with the number of tasks the cluster runs. Times in the JSON views are
wall-clock epoch seconds: a feed message carries ``now`` (the scheduler's monotonic clock) and
``wall_time``, and an event at monotonic ``t`` happened at ``wall_time - (now - t)``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from scaler.protocol.messages import (
    PeerEventKind,
    StatusEvents,
    StatusSnapshot,
    TaskEventKind,
    WorkerState,
    WorkerStatus,
)
from scaler.ui.tasks import TaskTable, peer_name

DEFAULT_TASKS_RING_SIZE = 100_000
DEFAULT_HISTORY_SECONDS = 600.0
SPARKLINE_POINTS = 120  # per worker: two minutes at the default one snapshot a second
STREAM_SIZE = 20_000  # task runs kept for the task stream
PEER_EVENTS_SIZE = 200
_HISTORY_LIMIT = 100_000  # points, whatever the interval: a bound even if snapshots come very fast
_DONE_KEYS = ("finished", "failed", "cancelled")
_ENDED = {
    TaskEventKind.FINISHED: "finished",
    TaskEventKind.FAILED: "failed",
    TaskEventKind.CANCELLED: "cancelled",
    TaskEventKind.RETRIED: "retried",
}


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """The cluster at one snapshot, for the overview's graphs."""

    time: float
    tasks_per_second: float
    queued: int
    running: int
    workers: int
    cpu_percent: float  # the workers' CPU, summed (100 = one core busy)
    rss_bytes: int  # the workers' memory, summed


@dataclass(slots=True)
class TaskRun:
    """One run of a task on a worker, for the task stream."""

    worker: str
    function: str
    task_id: str
    start: float
    end: float
    state: str


@dataclass
class WorkerTrack:
    """A worker's latest status, and its recent CPU and memory."""

    status: WorkerStatus
    first_seen: float
    cpu: deque[float] = field(default_factory=lambda: deque(maxlen=SPARKLINE_POINTS))
    rss: deque[int] = field(default_factory=lambda: deque(maxlen=SPARKLINE_POINTS))


class DashboardModel:
    """The dashboard's state; feed it messages with ``apply`` and read the views. Not thread-safe."""

    def __init__(
        self,
        tasks_ring_size: int = DEFAULT_TASKS_RING_SIZE,
        history_seconds: float = DEFAULT_HISTORY_SECONDS,
        stream_size: int = STREAM_SIZE,
    ):
        if history_seconds <= 0:
            raise ValueError(f"history_seconds must be more than 0, got {history_seconds}")
        self.history_seconds = history_seconds
        self.tasks = TaskTable(tasks_ring_size)
        self.history: deque[HistoryPoint] = deque(maxlen=_HISTORY_LIMIT)
        self.workers: dict[bytes, WorkerTrack] = {}
        self.stream: deque[TaskRun] = deque(maxlen=stream_size)
        self.peer_events: deque[dict[str, Any]] = deque(maxlen=PEER_EVENTS_SIZE)
        self.snapshot: StatusSnapshot | None = None
        self.version = 0  # bumped by every message: the live updates tell the page when to refetch
        self.snapshots = 0
        self.events = 0  # task and peer events applied
        self.events_dropped = 0  # events the scheduler left out of the feed (its per-turn bound)
        self._last_done: tuple[float, int] | None = None  # (wall time, tasks ended) at the last snapshot

    def apply(self, message: StatusSnapshot | StatusEvents) -> None:
        """Take one feed message into the model."""
        self.version += 1
        if isinstance(message, StatusSnapshot):
            self._apply_snapshot(message)
        else:
            self._apply_events(message)

    # -- the messages ---------------------------------------------------------------------------

    def _apply_snapshot(self, snapshot: StatusSnapshot) -> None:
        self.snapshots += 1
        self.snapshot = snapshot
        wall = snapshot.wall_time
        scheduler = snapshot.scheduler
        done = sum(scheduler.tasks_total.get(key, 0) for key in _DONE_KEYS)
        rate = 0.0
        if self._last_done is not None:
            last_wall, last_done = self._last_done
            if wall > last_wall and done >= last_done:
                rate = (done - last_done) / (wall - last_wall)
        self._last_done = (wall, done)
        seen = set()
        for status in snapshot.workers:
            seen.add(status.worker_id)
            track = self.workers.get(status.worker_id)
            if track is None:
                track = self.workers[status.worker_id] = WorkerTrack(status, wall)
            track.status = status
            track.cpu.append(status.cpu_percent)
            track.rss.append(status.rss_bytes)
        for gone in [worker_id for worker_id in self.workers if worker_id not in seen]:
            del self.workers[gone]
        by_state = scheduler.tasks_by_state
        self.history.append(
            HistoryPoint(
                time=wall,
                tasks_per_second=rate,
                # Running means a processor runs it now; every other live task waits somewhere: in the
                # scheduler's queue, on its inputs (a graph node), or in a worker's queue behind its current one.
                queued=sum(by_state.values()) - by_state.get("running", 0),
                running=by_state.get("running", 0),
                workers=len(snapshot.workers),
                cpu_percent=sum(worker.cpu_percent for worker in snapshot.workers),
                rss_bytes=sum(worker.rss_bytes for worker in snapshot.workers),
            )
        )
        while self.history and self.history[0].time < wall - self.history_seconds:
            self.history.popleft()

    def _apply_events(self, message: StatusEvents) -> None:
        self.events_dropped += message.dropped
        self.events += len(message.tasks) + len(message.peers)
        offset = message.wall_time - message.now  # wall = monotonic + offset
        for record in message.tasks:
            wall = record.time + offset
            self.tasks.apply(record, wall)
            state = _ENDED.get(record.kind)
            if state is not None and record.worker_id:
                row = self.tasks.get(record.task_id)
                self.stream.append(
                    TaskRun(
                        worker=row.worker if row is not None else peer_name(record.worker_id),
                        function=row.function if row is not None else record.function_name,
                        task_id=record.task_id.hex(),
                        start=wall - record.run_seconds,
                        end=wall,
                        state=state,
                    )
                )
        for peer in message.peers:
            self.peer_events.append(
                {
                    "time": peer.time + offset,
                    "kind": PeerEventKind(peer.kind).name.lower(),
                    "peer": peer_name(peer.peer_id),
                    "detail": peer.detail,
                }
            )

    # -- the views ------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """The header's figures, sent with every live update."""
        snapshot = self.snapshot
        latest = self.history[-1] if self.history else None
        totals = snapshot.scheduler.tasks_total if snapshot is not None else {}
        return {
            "version": self.version,
            "connected": snapshot is not None,
            "scheduler_version": snapshot.scheduler.version if snapshot is not None else "",
            "uptime_seconds": snapshot.scheduler.uptime_seconds if snapshot is not None else 0.0,
            "workers": len(self.workers),
            "clients": len(snapshot.clients) if snapshot is not None else 0,
            "tasks_per_second": latest.tasks_per_second if latest is not None else 0.0,
            "queued": latest.queued if latest is not None else 0,
            "running": latest.running if latest is not None else 0,
            "tasks_total": dict(totals),
            "tasks_seen": len(self.tasks) + self.tasks.forgotten,
            "feed_dropped": snapshot.scheduler.feed_dropped if snapshot is not None else 0,
            "events_dropped": self.events_dropped,
        }

    def overview(self) -> dict[str, Any]:
        """The overview: the summary, the scheduler's figures and the graphs' series."""
        snapshot = self.snapshot
        scheduler: dict[str, Any] = {}
        if snapshot is not None:
            status = snapshot.scheduler
            scheduler = {
                "cpu_percent": status.cpu_percent,
                "rss_bytes": status.rss_bytes,
                "messages_in_per_second": status.messages_in_per_second,
                "messages_out_per_second": status.messages_out_per_second,
                "tasks_by_state": dict(status.tasks_by_state),
                "objects": status.objects,
                "object_bytes": status.object_bytes,
            }
        points = list(self.history)
        return {
            "summary": self.summary(),
            "scheduler": scheduler,
            "series": {
                "time": [point.time for point in points],
                "tasks_per_second": [point.tasks_per_second for point in points],
                "queued": [point.queued for point in points],
                "running": [point.running for point in points],
                "workers": [point.workers for point in points],
                "cpu_percent": [point.cpu_percent for point in points],
                "rss_bytes": [point.rss_bytes for point in points],
            },
        }

    def workers_view(self) -> list[dict[str, Any]]:
        """The workers table: each worker's figures, what it runs now, and its sparklines."""
        result = []
        for worker_id, track in sorted(self.workers.items()):
            status = track.status
            result.append(
                {
                    "worker": peer_name(worker_id),
                    "state": WorkerState(status.state).name.lower(),
                    "capabilities": dict(status.capabilities),
                    "queued": status.queued,
                    "running": [
                        {
                            "task_id": task.task_id.hex(),
                            "function": task.function_name,
                            "client": peer_name(task.client_id),
                            "running_seconds": task.running_seconds,
                        }
                        for task in status.running
                    ],
                    "processors_running": status.processors_running,
                    "processors_parked": status.processors_parked,
                    "processors_idle": status.processors_idle,
                    "cpu_percent": status.cpu_percent,
                    "rss_bytes": status.rss_bytes,
                    "heartbeat_age_seconds": status.heartbeat_age_seconds,
                    "done": status.done,
                    "cpu_history": list(track.cpu),
                    "rss_history": list(track.rss),
                }
            )
        return result

    def stream_view(self, window_seconds: float = 60.0) -> dict[str, Any]:
        """The task stream: the runs that ended in the last ``window_seconds`` of the feed, and those running now."""
        snapshot = self.snapshot
        latest = max(snapshot.wall_time if snapshot is not None else 0.0, self.stream[-1].end if self.stream else 0.0)
        since = latest - window_seconds
        runs = [run for run in self.stream if run.end >= since]
        running = []
        if snapshot is not None:
            for status in snapshot.workers:
                for task in status.running:
                    running.append(
                        {
                            "worker": peer_name(status.worker_id),
                            "function": task.function_name,
                            "task_id": task.task_id.hex(),
                            "start": snapshot.wall_time - task.running_seconds,
                            "end": snapshot.wall_time,
                            "state": "running",
                        }
                    )
        return {
            "now": latest,
            "window_seconds": window_seconds,
            "workers": sorted({peer_name(worker_id) for worker_id in self.workers} | {run.worker for run in runs}),
            "runs": [
                {
                    "worker": run.worker,
                    "function": run.function,
                    "task_id": run.task_id,
                    "start": run.start,
                    "end": run.end,
                    "state": run.state,
                }
                for run in runs
            ]
            + running,
        }

    def clients_view(self) -> dict[str, Any]:
        """The clients table, and the recent comings and goings of workers and clients."""
        clients = []
        if self.snapshot is not None:
            for client in self.snapshot.clients:
                clients.append(
                    {
                        "client": peer_name(client.client_id),
                        "queued": client.queued,
                        "running": client.running,
                        "done": client.done,
                        "failed": client.failed,
                        "cancelled": client.cancelled,
                        "credits_in_use": client.credits_in_use,
                        "connected_seconds": client.connected_seconds,
                    }
                )
        return {"clients": clients, "peer_events": list(reversed(self.peer_events))}
