"""ClusterMetrics: synthetic feed messages in, a Prometheus scrape out, parsed back and compared with the input."""

from __future__ import annotations

import threading

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

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
from scaler.ui.metrics import DURATION_BUCKETS, ClusterMetrics, peer_label

pytestmark = pytest.mark.timeout(30)

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class FakeClock:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def scrape(registry: CollectorRegistry) -> Samples:
    """Render the registry as Prometheus text and parse it back: {(sample name, sorted labels): value}."""
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


def scheduler(scheduler_id: bytes = b"scheduler|h|1|aa", uptime: float = 50.0, **fields: object) -> SchedulerStatus:
    status = SchedulerStatus(
        scheduler_id=scheduler_id,
        version="9.9",
        uptime_seconds=uptime,
        cpu_percent=37.5,
        rss_bytes=123_456_789,
        messages_in_per_second=1500.5,
        messages_out_per_second=1400.25,
        tasks_by_state={"waiting": 1, "queued": 7, "assigned": 3, "running": 2, "balancing": 0, "canceling": 1},
        tasks_total={"submitted": 100, "finished": 80, "failed": 5, "cancelled": 2, "retried": 1},
        objects=12,
        object_bytes=4096,
        feed_dropped=3,
    )
    for name, field_value in fields.items():
        setattr(status, name, field_value)
    return status


def worker(name: str, state: WorkerState = WorkerState.ACTIVE, running: int = 1) -> WorkerStatus:
    return WorkerStatus(
        worker_id=f"worker|{name}|42|abcd".encode(),
        state=state,
        capabilities={},
        queued=4,
        running=[RunningTask(f"t{i}".encode(), "f", b"client", 1.5) for i in range(running)],
        processors_running=running,
        processors_parked=1,
        processors_idle=2,
        cpu_percent=150.0,
        rss_bytes=2_000_000,
        heartbeat_age_seconds=0.25,
        done=17,
    )


def client(name: bytes) -> ClientStatus:
    return ClientStatus(name, queued=1, running=1, done=3, failed=0, cancelled=0, credits_in_use=2, connected_seconds=9)


def snapshot(
    status: SchedulerStatus | None = None, workers: list[WorkerStatus] | None = None, wall_time: float = 1_000_000.0
) -> StatusSnapshot:
    return StatusSnapshot(
        request_id=0,
        now=500.0,
        wall_time=wall_time,
        scheduler=status or scheduler(),
        clients=[client(b"c1"), client(b"c2")],
        workers=[worker("a"), worker("b")] if workers is None else workers,
    )


def task_event(kind: TaskEventKind, run: float = 0.0, wait: float = 0.0, worker_id: bytes = b"w") -> TaskEventRecord:
    return TaskEventRecord(kind, 1.0, b"task", b"client", worker_id, "f", 1, wait, run, 0, "")


def events(*tasks: TaskEventRecord, peers: tuple[PeerEventKind, ...] = (), dropped: int = 0) -> StatusEvents:
    return StatusEvents(
        now=501.0,
        wall_time=1_000_001.0,
        tasks=list(tasks),
        peers=[PeerEventRecord(kind, 1.0, b"peer", "") for kind in peers],
        dropped=dropped,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry, clock: FakeClock) -> ClusterMetrics:
    return ClusterMetrics(registry, clock=clock)


def test_before_any_message_only_the_feed_and_event_metrics_show(
    metrics: ClusterMetrics, registry: CollectorRegistry
) -> None:
    samples = scrape(registry)
    assert value(samples, "scaler_scheduler_up") == 0
    assert "scaler_tasks_total" not in names(samples)
    assert "scaler_workers" not in names(samples)
    assert "scaler_status_feed_last_message_age_seconds" not in names(samples)
    assert value(samples, "scaler_task_duration_seconds_count", state="finished") == 0
    assert value(samples, "scaler_worker_events_total", event="died") == 0
    assert metrics.health()["status"] == "waiting"


def test_a_snapshot_s_figures_are_exported_as_given(
    metrics: ClusterMetrics, registry: CollectorRegistry, clock: FakeClock
) -> None:
    workers = [worker("a"), worker("b", WorkerState.DRAINING, running=0), worker("c", WorkerState.LOST)]
    message = snapshot(workers=workers)
    metrics.update(message)
    clock.now += 0.5
    samples = scrape(registry)

    s = message.scheduler
    for state, count in s.tasks_total.items():
        assert value(samples, "scaler_tasks_total", state=state) == count
        # the counter's creation time is the scheduler's start, in epoch seconds
        assert value(samples, "scaler_tasks_created", state=state) == message.wall_time - s.uptime_seconds
    for state, count in s.tasks_by_state.items():
        assert value(samples, "scaler_tasks_live", state=state) == count
    assert value(samples, "scaler_tasks_queued") == 7
    assert value(samples, "scaler_workers", state="active") == 1
    assert value(samples, "scaler_workers", state="draining") == 1
    assert value(samples, "scaler_workers", state="lost") == 1
    assert value(samples, "scaler_clients") == 2
    assert value(samples, "scaler_scheduler_cpu_ratio") == pytest.approx(0.375)
    assert value(samples, "scaler_scheduler_rss_bytes") == 123_456_789
    assert value(samples, "scaler_scheduler_uptime_seconds") == 50
    assert value(samples, "scaler_scheduler_start_time_seconds") == message.wall_time - 50
    assert value(samples, "scaler_scheduler_messages_in_per_second") == 1500.5
    assert value(samples, "scaler_scheduler_messages_out_per_second") == 1400.25
    assert value(samples, "scaler_objects") == 12
    assert value(samples, "scaler_object_bytes") == 4096
    assert value(samples, "scaler_feed_dropped_total") == 3
    assert value(samples, "scaler_scheduler_info", scheduler_id="scheduler|h|1|aa", version="9.9") == 1
    assert value(samples, "scaler_scheduler_up") == 1
    assert value(samples, "scaler_status_feed_last_snapshot_age_seconds") == pytest.approx(0.5)
    assert value(samples, "scaler_status_feed_last_message_age_seconds") == pytest.approx(0.5)
    assert value(samples, "scaler_processors", state="running") == 2
    assert value(samples, "scaler_processors", state="parked") == 3
    assert value(samples, "scaler_processors", state="idle") == 6

    for status in workers:
        label = peer_label(status.worker_id)
        assert value(samples, "scaler_worker_cpu_ratio", worker=label) == pytest.approx(1.5)
        assert value(samples, "scaler_worker_rss_bytes", worker=label) == 2_000_000
        assert value(samples, "scaler_worker_queued_tasks", worker=label) == 4
        assert value(samples, "scaler_worker_running_tasks", worker=label) == len(status.running)
        assert value(samples, "scaler_worker_processors", worker=label, state="idle") == 2
        assert value(samples, "scaler_worker_heartbeat_age_seconds", worker=label) == 0.25
        assert value(samples, "scaler_worker_tasks_done_total", worker=label) == 17
    assert metrics.health() == {
        "status": "ok",
        "scheduler_id": "scheduler|h|1|aa",
        "last_snapshot_age_seconds": pytest.approx(0.5),
        "workers": 3,
        "clients": 2,
    }


def test_a_worker_s_series_go_when_the_next_snapshot_no_longer_lists_it(
    metrics: ClusterMetrics, registry: CollectorRegistry
) -> None:
    metrics.update(snapshot(workers=[worker("a"), worker("b")]))
    gone = peer_label(worker("b").worker_id)
    assert ("scaler_worker_rss_bytes", (("worker", gone),)) in scrape(registry)

    metrics.update(snapshot(workers=[worker("a")]))
    samples = scrape(registry)
    assert not [key for key in samples if ("worker", gone) in key[1]]
    assert value(samples, "scaler_worker_rss_bytes", worker=peer_label(worker("a").worker_id)) == 2_000_000
    assert value(samples, "scaler_workers", state="active") == 1

    metrics.update(snapshot(workers=[]))
    samples = scrape(registry)
    assert not [name for name in names(samples) if name.startswith("scaler_worker_") and "events" not in name]
    assert value(samples, "scaler_workers", state="active") == 0


def test_task_totals_follow_the_scheduler_and_start_again_after_a_restart(
    metrics: ClusterMetrics, registry: CollectorRegistry
) -> None:
    first = b"scheduler|h|1|aa"
    metrics.update(snapshot(scheduler(first, uptime=50.0), wall_time=1_000_000.0))
    created = value(scrape(registry), "scaler_tasks_created", state="finished")
    assert created == 1_000_000.0 - 50.0

    # the same scheduler later: the value follows, and the creation time does not jitter with each snapshot
    later = scheduler(first, uptime=60.1, tasks_total={"submitted": 130, "finished": 120, "failed": 6})
    metrics.update(snapshot(later, wall_time=1_000_010.0))
    samples = scrape(registry)
    assert value(samples, "scaler_tasks_total", state="finished") == 120
    assert value(samples, "scaler_tasks_total", state="failed") == 6
    assert value(samples, "scaler_tasks_total", state="cancelled") == 0  # left out by the scheduler: still 0
    assert value(samples, "scaler_tasks_created", state="finished") == created

    metrics.update(events(task_event(TaskEventKind.FINISHED, run=0.2)))

    # a new scheduler: its own totals, from its own start, and only its info series
    second = b"scheduler|h|2|bb"
    restarted = scheduler(second, uptime=2.0, tasks_total={"submitted": 4, "finished": 1}, feed_dropped=0)
    metrics.update(snapshot(restarted, wall_time=1_000_100.0))
    samples = scrape(registry)
    assert value(samples, "scaler_tasks_total", state="finished") == 1
    assert value(samples, "scaler_tasks_total", state="submitted") == 4
    assert value(samples, "scaler_tasks_created", state="finished") == 1_000_098.0
    assert value(samples, "scaler_feed_dropped_total") == 0
    assert value(samples, "scaler_scheduler_start_time_seconds") == 1_000_098.0
    assert value(samples, "scaler_scheduler_info", scheduler_id="scheduler|h|2|bb", version="9.9") == 1
    assert not [
        key for key in samples if key[0] == "scaler_scheduler_info" and ("scheduler_id", first.decode()) in key[1]
    ]
    # what this process observed from the events is kept across the restart
    assert value(samples, "scaler_task_duration_seconds_count", state="finished") == 1


def test_histograms_and_event_counters_count_the_events(metrics: ClusterMetrics, registry: CollectorRegistry) -> None:
    runs = [0.0004, 0.02, 0.3, 7.0, 4000.0]
    waits = [0.0001, 0.003, 2.0, 0.2, 0.05, 0.5]  # one per task that ran and ended: the finished, then the failed
    metrics.update(
        events(
            *(task_event(TaskEventKind.FINISHED, run=run, wait=wait) for run, wait in zip(runs, waits, strict=False)),
            task_event(TaskEventKind.FAILED, run=1.5, wait=waits[-1]),
            task_event(TaskEventKind.FAILED, worker_id=b"", wait=9.0),  # refused by the scheduler: it never ran
            task_event(TaskEventKind.STARTED, wait=7.0),  # its end, if any, brings its wait: not counted twice
            task_event(TaskEventKind.SUBMITTED),
            task_event(TaskEventKind.CANCELLED, run=3.0),
            task_event(TaskEventKind.RETRIED, run=3.0),
            peers=(PeerEventKind.WORKER_JOINED, PeerEventKind.WORKER_JOINED, PeerEventKind.WORKER_DIED),
            dropped=5,
        )
    )
    metrics.update(events(peers=(PeerEventKind.CLIENT_JOINED, PeerEventKind.CLIENT_LEFT), dropped=2))
    samples = scrape(registry)

    assert value(samples, "scaler_task_duration_seconds_count", state="finished") == len(runs)
    assert value(samples, "scaler_task_duration_seconds_sum", state="finished") == pytest.approx(sum(runs))
    for bound in DURATION_BUCKETS:
        expected = sum(1 for run in runs if run <= bound)
        assert value(samples, "scaler_task_duration_seconds_bucket", state="finished", le=str(float(bound))) == expected
    assert value(samples, "scaler_task_duration_seconds_bucket", state="finished", le="+Inf") == len(runs)
    assert value(samples, "scaler_task_duration_seconds_count", state="failed") == 1
    assert value(samples, "scaler_task_duration_seconds_sum", state="failed") == 1.5

    assert value(samples, "scaler_task_queue_wait_seconds_count") == len(waits)
    assert value(samples, "scaler_task_queue_wait_seconds_sum") == pytest.approx(sum(waits))
    assert value(samples, "scaler_task_queue_wait_seconds_bucket", le="0.001") == 1
    assert value(samples, "scaler_task_queue_wait_seconds_bucket", le="2.5") == len(waits)

    assert value(samples, "scaler_worker_events_total", event="joined") == 2
    assert value(samples, "scaler_worker_events_total", event="died") == 1
    assert value(samples, "scaler_worker_events_total", event="left") == 0
    assert value(samples, "scaler_client_events_total", event="joined") == 1
    assert value(samples, "scaler_client_events_total", event="left") == 1
    assert value(samples, "scaler_status_events_dropped_total") == 7
    # events tell the feed is alive, not what the cluster looks like
    assert value(samples, "scaler_scheduler_up") == 0
    assert value(samples, "scaler_status_feed_last_message_age_seconds") == 0


def test_a_stale_snapshot_is_not_served(metrics: ClusterMetrics, registry: CollectorRegistry, clock: FakeClock) -> None:
    metrics.update(snapshot())
    clock.now += metrics.stale_after_seconds + 0.1
    samples = scrape(registry)
    assert value(samples, "scaler_scheduler_up") == 0
    assert value(samples, "scaler_status_feed_last_message_age_seconds") == pytest.approx(10.1)
    for gone in ("scaler_tasks_total", "scaler_workers", "scaler_worker_rss_bytes", "scaler_scheduler_rss_bytes"):
        assert gone not in names(samples)
    health = metrics.health()
    assert health["status"] == "stale" and health["last_snapshot_age_seconds"] == pytest.approx(10.1)
    assert health["scheduler_id"] == "scheduler|h|1|aa" and "workers" not in health

    metrics.update(snapshot())
    samples = scrape(registry)
    assert value(samples, "scaler_scheduler_up") == 1
    assert value(samples, "scaler_tasks_total", state="finished") == 80


def test_a_scheduler_with_a_long_status_interval_is_not_stale_between_snapshots(
    metrics: ClusterMetrics, registry: CollectorRegistry, clock: FakeClock
) -> None:
    first = snapshot()
    metrics.update(first)
    clock.now += 30
    later = snapshot()
    later.now = first.now + 30  # --status-interval-seconds 30
    metrics.update(later)
    clock.now += 60  # two intervals on: the next snapshot is late, not lost
    assert value(scrape(registry), "scaler_scheduler_up") == 1
    clock.now += 31
    assert value(scrape(registry), "scaler_scheduler_up") == 0


def test_unknown_states_are_exported_and_odd_ids_become_hex(
    metrics: ClusterMetrics, registry: CollectorRegistry
) -> None:
    status = scheduler(b"\xff\x00id", tasks_total={"finished": 1, "parked": 2}, tasks_by_state={"suspended": 4})
    odd = worker("a")
    odd.worker_id = b"\x01\x02"
    metrics.update(snapshot(status, workers=[odd]))
    samples = scrape(registry)
    assert value(samples, "scaler_tasks_total", state="parked") == 2
    assert value(samples, "scaler_tasks_live", state="suspended") == 4
    assert value(samples, "scaler_tasks_live", state="queued") == 0
    assert value(samples, "scaler_tasks_queued") == 0
    assert value(samples, "scaler_scheduler_info", scheduler_id="ff006964", version="9.9") == 1
    assert value(samples, "scaler_worker_rss_bytes", worker="0102") == 2_000_000


def test_a_second_instance_in_the_same_registry_is_refused(
    metrics: ClusterMetrics, registry: CollectorRegistry
) -> None:
    with pytest.raises(ValueError, match="Duplicated"):
        ClusterMetrics(registry)


def test_updates_and_scrapes_from_different_threads(metrics: ClusterMetrics, registry: CollectorRegistry) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []

    def feed() -> None:
        try:
            i = 0
            while not stop.is_set():
                i += 1
                workers = [worker(str(n)) for n in range(i % 7)]
                metrics.update(snapshot(scheduler(tasks_total={"finished": i}), workers=workers))
                metrics.update(events(task_event(TaskEventKind.FINISHED, run=0.01)))
        except BaseException as error:  # reported by the test thread
            errors.append(error)

    thread = threading.Thread(target=feed)
    thread.start()
    try:
        last = 0.0
        for _ in range(30):
            samples = scrape(registry)
            if ("scaler_tasks_total", (("state", "finished"),)) in samples:
                finished = value(samples, "scaler_tasks_total", state="finished")
                assert finished >= last
                last = finished
                # one scrape reads one snapshot: the per-worker series match the worker count
                per_worker = [key for key in samples if key[0] == "scaler_worker_rss_bytes"]
                assert value(samples, "scaler_workers", state="active") == len(per_worker)
    finally:
        stop.set()
        thread.join(10)
    assert not errors
