"""The status feed as Prometheus metrics: what ``scaler_ui`` serves at ``/metrics``.

::

    StatusFeed.receive() ──▶ ClusterMetrics.update(message)
                               ├─ StatusSnapshot: kept whole, as the latest one (under a lock)
                               └─ StatusEvents:   histograms (run time, queue wait), event counters
    GET /metrics ──▶ generate_latest(registry) ──▶ ClusterMetrics.collect(): the latest snapshot's values

Everything the snapshot states (task totals, live tasks, workers, the scheduler's own figures,
per-worker figures) is read from the latest snapshot at scrape time by a custom collector, so a
value is exactly what the scheduler said, and a worker's series disappear with the snapshot that no
longer lists it. The snapshot's ``tasks_total`` is cumulative since the scheduler started, so
``scaler_tasks_total`` is a counter that follows it, whose ``_created`` is the scheduler's start: a
restarted scheduler (a new ``scheduler_id``) starts its counters again from zero, which Prometheus'
``rate()`` reads as a counter reset, as it does for any restarted process.

What only the events tell (how long tasks ran and waited, workers joining and dying) is counted
here, from the moment this process started listening: histograms and counters that survive a
scheduler restart. A snapshot older than ``stale_after_seconds`` (or three of the scheduler's status
intervals, if that is longer) is not served: a scheduler that went
away shows as ``scaler_scheduler_up 0`` and no figures, rather than as its last figures frozen.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from scaler.monitor.feed import readable_id
from scaler.protocol.messages import (
    PeerEventKind,
    SchedulerStatus,
    StatusEvents,
    StatusSnapshot,
    TaskEventKind,
    WorkerState,
    WorkerStatus,
)

logger = logging.getLogger(__name__)

TASK_TOTAL_STATES = ("submitted", "finished", "failed", "cancelled", "retried")
"""The keys of ``SchedulerStatus.tasks_total``: always exported, as 0 when the scheduler leaves one out."""

LIVE_TASK_STATES = ("waiting", "queued", "assigned", "running", "balancing", "canceling")
"""The keys of ``SchedulerStatus.tasks_by_state``: always exported, as 0 when the scheduler leaves one out."""

DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
"""Run time buckets, in seconds: from a no-op task (about a millisecond) to an hour-long one."""

QUEUE_WAIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)
"""Queue wait buckets, in seconds: an idle cluster starts a task within a millisecond; a busy one makes it wait."""

_WORKER_STATE_LABELS = {WorkerState.ACTIVE: "active", WorkerState.DRAINING: "draining", WorkerState.LOST: "lost"}
_WORKER_EVENTS = {
    PeerEventKind.WORKER_JOINED: "joined",
    PeerEventKind.WORKER_LEFT: "left",
    PeerEventKind.WORKER_DIED: "died",
    PeerEventKind.WORKER_DRAINING: "draining",
}
_CLIENT_EVENTS = {PeerEventKind.CLIENT_JOINED: "joined", PeerEventKind.CLIENT_LEFT: "left"}
_PROCESSOR_STATES = ("running", "parked", "idle")
_SCHEDULER_GAUGES: tuple[tuple[str, str, Callable[[SchedulerStatus], float]], ...] = (
    (
        "scaler_tasks_queued",
        "Tasks in the scheduler's queue, waiting for a worker.",
        lambda s: s.tasks_by_state.get("queued", 0),
    ),
    ("scaler_scheduler_uptime_seconds", "Seconds since the scheduler started.", lambda s: s.uptime_seconds),
    ("scaler_scheduler_cpu_ratio", "The scheduler's CPU use (1 = one core busy).", lambda s: s.cpu_percent / 100),
    ("scaler_scheduler_rss_bytes", "The scheduler's resident memory.", lambda s: s.rss_bytes),
    (
        "scaler_scheduler_messages_in_per_second",
        "Messages the scheduler received per second.",
        lambda s: s.messages_in_per_second,
    ),
    (
        "scaler_scheduler_messages_out_per_second",
        "Messages the scheduler sent per second.",
        lambda s: s.messages_out_per_second,
    ),
    ("scaler_objects", "Objects in the scheduler's object store.", lambda s: s.objects),
    ("scaler_object_bytes", "Bytes of the objects in the scheduler's object store.", lambda s: s.object_bytes),
)


peer_label = readable_id  # one spelling of ids for the metrics, the model and the pages


@dataclass(frozen=True)
class _Latest:
    """The latest snapshot and what this process knows about it."""

    snapshot: StatusSnapshot
    received_at: float  # this process's clock
    started_at: float  # the scheduler's start, in epoch seconds: its counters' ``_created``
    interval: float  # seconds between this snapshot and the one before (0 for a scheduler's first)


class ClusterMetrics(Collector):
    """Turns a scheduler's status feed into Prometheus metrics in ``registry``; see the module docstring.

    Call ``update`` with every message the feed gives (from any one thread) and serve ``registry``
    (from any thread). ``stale_after_seconds`` is how long the latest snapshot is served after it
    arrived, stretched to three status intervals for a scheduler that sends them further apart;
    ``clock`` is a monotonic clock in seconds, replaced in tests.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        stale_after_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stale_after_seconds = stale_after_seconds
        self._clock = clock
        # update() runs on the feed's thread and collect() on the server's: the lock keeps the
        # latest snapshot and its receive time one consistent pair.
        self._lock = threading.Lock()
        self._latest: _Latest | None = None
        self._last_message_at: float | None = None
        self._task_duration = Histogram(
            "scaler_task_duration_seconds",
            "How long tasks ran on a worker (started -> ended), by how they ended; from the feed's events.",
            ["state"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self._queue_wait = Histogram(
            "scaler_task_queue_wait_seconds",
            "How long tasks that ran and ended waited from submission to start; from the feed's events.",
            buckets=QUEUE_WAIT_BUCKETS,
            registry=registry,
        )
        self._events_dropped = Counter(
            "scaler_status_events_dropped_total",
            "Events the scheduler left out of its event messages (the per-turn bound); the histograms miss them.",
            registry=registry,
        )
        self._worker_events = Counter(
            "scaler_worker_events_total",
            "Workers that joined, left, died or started draining.",
            ["event"],
            registry=registry,
        )
        self._client_events = Counter(
            "scaler_client_events_total", "Clients that joined or left.", ["event"], registry=registry
        )
        # Known label values start at 0, so a query or an alert sees the series before the first event.
        for state in ("finished", "failed"):
            self._task_duration.labels(state)
        for name in _WORKER_EVENTS.values():
            self._worker_events.labels(name)
        for name in _CLIENT_EVENTS.values():
            self._client_events.labels(name)
        registry.register(self)

    def update(self, message: StatusSnapshot | StatusEvents) -> None:
        """Take one message from the status feed."""
        now = self._clock()
        if isinstance(message, StatusSnapshot):
            self._take_snapshot(message, now)
        elif isinstance(message, StatusEvents):
            self._take_events(message)
        with self._lock:
            self._last_message_at = now

    def _take_snapshot(self, snapshot: StatusSnapshot, now: float) -> None:
        scheduler = snapshot.scheduler
        with self._lock:
            previous = self._latest
            if previous is not None and previous.snapshot.scheduler.scheduler_id == scheduler.scheduler_id:
                started_at = previous.started_at  # computed once: each snapshot's jitter would move it
                interval = snapshot.now - previous.snapshot.now  # the scheduler's own clock
            else:
                if previous is not None:
                    logger.info(
                        "status feed: scheduler %s replaced %s; its counters start again",
                        peer_label(scheduler.scheduler_id),
                        peer_label(previous.snapshot.scheduler.scheduler_id),
                    )
                started_at = snapshot.wall_time - scheduler.uptime_seconds
                interval = 0.0
            self._latest = _Latest(snapshot, now, started_at, interval)

    def _take_events(self, events: StatusEvents) -> None:
        for task in events.tasks:
            # Both from a task's end, not from STARTED: the scheduler leaves STARTED out for an
            # attempt that ends before its events leave, and the end carries the queue wait too.
            if task.kind in (TaskEventKind.FINISHED, TaskEventKind.FAILED) and task.worker_id:
                # A task refused by the scheduler fails without a worker: it never ran, so it has no run time.
                state = "finished" if task.kind == TaskEventKind.FINISHED else "failed"
                self._task_duration.labels(state).observe(task.run_seconds)
                self._queue_wait.observe(task.queue_wait_seconds)
        for peer in events.peers:
            if peer.kind in _WORKER_EVENTS:
                self._worker_events.labels(_WORKER_EVENTS[peer.kind]).inc()
            elif peer.kind in _CLIENT_EVENTS:
                self._client_events.labels(_CLIENT_EVENTS[peer.kind]).inc()
        if events.dropped:
            self._events_dropped.inc(events.dropped)

    def _read(self) -> tuple[_Latest | None, bool, float | None, float]:
        """The latest snapshot (None before any), whether it is fresh, the last message's age, and now."""
        now = self._clock()
        with self._lock:
            latest, last_message_at = self._latest, self._last_message_at
        fresh = latest is not None and now - latest.received_at <= max(self.stale_after_seconds, 3 * latest.interval)
        return latest, fresh, (None if last_message_at is None else now - last_message_at), now

    def health(self) -> dict[str, object]:
        """A summary for ``/health``: ``status`` is ``ok`` while snapshots arrive, else ``stale`` or ``waiting``."""
        latest, fresh, _, now = self._read()
        if latest is None:
            return {"status": "waiting", "scheduler_id": None, "last_snapshot_age_seconds": None}
        summary: dict[str, object] = {
            "status": "ok" if fresh else "stale",
            "scheduler_id": peer_label(latest.snapshot.scheduler.scheduler_id),
            "last_snapshot_age_seconds": now - latest.received_at,
        }
        if fresh:  # a stale snapshot's counts would be a guess
            summary["workers"] = len(latest.snapshot.workers)
            summary["clients"] = len(latest.snapshot.clients)
        return summary

    def describe(self) -> Iterable[Metric]:
        """The families ``collect`` yields, without samples: the registry checks names against them."""
        return list(_families(None, None, 0.0))

    def collect(self) -> Iterable[Metric]:
        """The feed's freshness and the latest snapshot's figures (none when it is stale)."""
        latest, fresh, message_age, now = self._read()
        return list(_families(latest if fresh else None, message_age, now))


def _families(latest: _Latest | None, message_age: float | None, now: float) -> Iterator[Metric]:
    """Every family read from the snapshot; with ``latest`` None, the feed's own families only."""
    up = GaugeMetricFamily("scaler_scheduler_up", "1 while the scheduler's status snapshots arrive, else 0.")
    up.add_metric([], 0.0 if latest is None else 1.0)
    yield up
    message_age_family = GaugeMetricFamily(
        "scaler_status_feed_last_message_age_seconds", "Seconds since the status feed last delivered anything."
    )
    if message_age is not None:
        message_age_family.add_metric([], message_age)
    yield message_age_family
    snapshot_age = GaugeMetricFamily(
        "scaler_status_feed_last_snapshot_age_seconds", "Seconds since the latest status snapshot arrived."
    )
    if latest is not None:
        snapshot_age.add_metric([], now - latest.received_at)
    yield snapshot_age
    if latest is None:
        yield from _snapshot_families(None, 0.0)
    else:
        yield from _snapshot_families(latest.snapshot, latest.started_at)


def _gauge(name: str, documentation: str, value: float | None, scheduler: SchedulerStatus | None) -> GaugeMetricFamily:
    """An unlabelled gauge, with one sample if there is a ``scheduler`` (a snapshot) to read."""
    family = GaugeMetricFamily(name, documentation)
    if scheduler is not None and value is not None:
        family.add_metric([], value)
    return family


def _snapshot_families(snapshot: StatusSnapshot | None, started_at: float) -> Iterator[Metric]:
    """The snapshot's figures; with ``snapshot`` None, the same families without samples (for ``describe``)."""
    s = None if snapshot is None else snapshot.scheduler
    workers: list[WorkerStatus] = [] if snapshot is None else snapshot.workers

    tasks_total = CounterMetricFamily(
        "scaler_tasks_total", "Tasks since the scheduler started, by what happened to them.", labels=["state"]
    )
    live = GaugeMetricFamily("scaler_tasks_live", "Tasks the scheduler holds now, by state.", labels=["state"])
    dropped = CounterMetricFamily(
        "scaler_feed_dropped_total",
        "Status messages the scheduler's monitor socket could not send (a slow subscriber).",
    )
    info = GaugeMetricFamily(
        "scaler_scheduler_info", "The scheduler's id and version (value 1).", labels=["scheduler_id", "version"]
    )
    if s is not None:
        for state in _with_extras(TASK_TOTAL_STATES, s.tasks_total):
            tasks_total.add_metric([state], s.tasks_total.get(state, 0), created=started_at)
        for state in _with_extras(LIVE_TASK_STATES, s.tasks_by_state):
            live.add_metric([state], s.tasks_by_state.get(state, 0))
        dropped.add_metric([], s.feed_dropped, created=started_at)
        info.add_metric([peer_label(s.scheduler_id), s.version], 1)
    yield tasks_total
    yield live
    yield dropped
    yield info
    yield _gauge("scaler_scheduler_start_time_seconds", "When the scheduler started, in epoch seconds.", started_at, s)
    for name, documentation, read in _SCHEDULER_GAUGES:
        yield _gauge(name, documentation, None if s is None else read(s), s)
    yield _gauge("scaler_clients", "Connected clients.", None if snapshot is None else len(snapshot.clients), s)

    by_state = GaugeMetricFamily("scaler_workers", "Connected workers, by state.", labels=["state"])
    processors = GaugeMetricFamily("scaler_processors", "Processors on all workers, by state.", labels=["state"])
    if snapshot is not None:
        for worker_state, label in _WORKER_STATE_LABELS.items():
            by_state.add_metric([label], sum(1 for worker in workers if worker.state == worker_state))
        processors.add_metric(["running"], sum(worker.processors_running for worker in workers))
        processors.add_metric(["parked"], sum(worker.processors_parked for worker in workers))
        processors.add_metric(["idle"], sum(worker.processors_idle for worker in workers))
    yield by_state
    yield processors
    yield from _worker_families(workers)


def _worker_families(workers: list[WorkerStatus]) -> Iterator[Metric]:
    """Per-worker series: only the workers the snapshot lists, so a worker's series go when it does."""
    cpu = GaugeMetricFamily(
        "scaler_worker_cpu_ratio", "A worker's CPU use, processors included (1 = one core busy).", labels=["worker"]
    )
    rss = GaugeMetricFamily(
        "scaler_worker_rss_bytes", "A worker's resident memory, processors included.", labels=["worker"]
    )
    queued = GaugeMetricFamily(
        "scaler_worker_queued_tasks", "Tasks a worker holds that have not started.", labels=["worker"]
    )
    running = GaugeMetricFamily("scaler_worker_running_tasks", "Tasks a worker runs now.", labels=["worker"])
    processors = GaugeMetricFamily(
        "scaler_worker_processors", "A worker's processors, by state.", labels=["worker", "state"]
    )
    heartbeat = GaugeMetricFamily(
        "scaler_worker_heartbeat_age_seconds",
        "Seconds since the scheduler last heard from a worker.",
        labels=["worker"],
    )
    done = CounterMetricFamily(
        "scaler_worker_tasks_done_total", "Tasks a worker ended since it joined.", labels=["worker"]
    )
    for worker in workers:
        name = peer_label(worker.worker_id)
        cpu.add_metric([name], worker.cpu_percent / 100)
        rss.add_metric([name], worker.rss_bytes)
        queued.add_metric([name], worker.queued)
        running.add_metric([name], len(worker.running))
        counts = (worker.processors_running, worker.processors_parked, worker.processors_idle)
        for state, count in zip(_PROCESSOR_STATES, counts, strict=True):
            processors.add_metric([name, state], count)
        heartbeat.add_metric([name], worker.heartbeat_age_seconds)
        done.add_metric([name], worker.done)
    yield from (cpu, rss, queued, running, processors, heartbeat, done)


def _with_extras(known: tuple[str, ...], values: dict[str, int]) -> list[str]:
    """The known states, then any other the scheduler sends (a newer scheduler's), so none is hidden."""
    return list(known) + sorted(key for key in values if key not in known)
