"""The dashboard's model, fed feed messages by hand: no sockets, no clock."""

from __future__ import annotations

import gc
import sys
import types

import psutil
import pytest

from scaler.protocol.messages import PeerEventKind, PeerEventRecord, RunningTask, TaskEventKind
from scaler.ui.model import DashboardModel
from scaler.ui.tasks import TaskTable
from tests.ui.fakes import CLIENT, FakeCluster, events, snapshot, task_event, worker_status

W1 = b"worker|alpha|1|aaaa"
W2 = b"worker|beta|2|bbbb"
WALL = 1_000_000.0


def tid(n: int) -> bytes:
    return n.to_bytes(16, "big")


def test_a_task_goes_from_submitted_to_finished():
    model = DashboardModel()
    model.apply(events([task_event(TaskEventKind.SUBMITTED, tid(1), 10.0, function="square")], now=20.0, wall=WALL))
    model.apply(events([task_event(TaskEventKind.STARTED, tid(1), 11.0, W1, "square", queue_wait=1.0)], 20.0, WALL))
    row = model.tasks.get(tid(1))
    assert row is not None
    assert (row.state, row.worker, row.function) == ("running", "worker|alpha|1|aaaa", "square")
    assert row.submitted == WALL - 10.0  # wall = wall_time - (now - time)
    assert row.started == WALL - 9.0
    model.apply(
        events(
            [task_event(TaskEventKind.FINISHED, tid(1), 13.0, W1, "square", queue_wait=1.0, run=2.0, peak_memory=5000)],
            20.0,
            WALL,
        )
    )
    assert (row.state, row.run_seconds, row.queue_wait_seconds, row.peak_memory_bytes) == ("finished", 2.0, 1.0, 5000)
    assert row.ended == WALL - 7.0
    assert row.client == CLIENT.decode()
    assert model.tasks.counts == {"queued": 0, "running": 0, "finished": 1, "failed": 0, "cancelled": 0}
    [run] = model.stream
    assert (run.worker, run.function, run.start, run.end, run.state) == (
        "worker|alpha|1|aaaa",
        "square",
        WALL - 9.0,
        WALL - 7.0,
        "finished",
    )


def test_a_task_first_seen_finished_gets_its_start_and_submission_from_its_times():
    model = DashboardModel()
    model.apply(
        events(
            [task_event(TaskEventKind.FAILED, tid(7), 10.0, W1, run=3.0, queue_wait=0.5, detail="FAILED")], 10.0, WALL
        )
    )
    row = model.tasks.get(tid(7))
    assert row is not None
    assert (row.state, row.detail, row.started, row.submitted) == ("failed", "FAILED", WALL - 3.0, WALL - 3.5)


def test_retried_tasks_wait_again_and_cancelled_ones_end():
    model = DashboardModel()
    model.apply(events([task_event(TaskEventKind.STARTED, tid(1), 1.0, W1)], 1.0, WALL))
    model.apply(events([task_event(TaskEventKind.RETRIED, tid(1), 2.0, W1, run=1.0, detail="worker died")], 2.0, WALL))
    row = model.tasks.get(tid(1))
    assert row is not None and (row.state, row.detail) == ("queued", "worker died")
    model.apply(events([task_event(TaskEventKind.STARTED, tid(1), 3.0, W2, attempt=2)], 3.0, WALL))
    model.apply(events([task_event(TaskEventKind.CANCELLED, tid(1), 4.0, W2, attempt=2, run=1.0)], 4.0, WALL))
    assert (row.state, row.worker, row.attempt) == ("cancelled", "worker|beta|2|bbbb", 2)
    assert [run.state for run in model.stream] == ["retried", "cancelled"]


def test_the_ring_buffer_keeps_the_newest_tasks_and_counts_the_rest():
    table = TaskTable(ring_size=3)
    for n in range(5):
        table.apply(task_event(TaskEventKind.SUBMITTED, tid(n)), WALL + n)
    assert len(table) == 3 and table.forgotten == 2
    assert [row.task_id for row in table.rows()] == [tid(2), tid(3), tid(4)]
    assert table.counts["queued"] == 3
    table.apply(task_event(TaskEventKind.FINISHED, tid(4), worker=W1, run=1.0), WALL + 9)
    assert table.counts == {"queued": 2, "running": 0, "finished": 1, "failed": 0, "cancelled": 0}


@pytest.mark.timeout(300)
@pytest.mark.slow
def test_a_million_task_events_keep_the_ring_at_its_size():
    model = DashboardModel(tasks_ring_size=1000)
    batch = []
    for n in range(1_000_000):
        batch.append(task_event(TaskEventKind.SUBMITTED, tid(n), float(n)))
        if len(batch) == 10_000:
            model.apply(events(batch, 1e6, WALL))
            batch = []
            assert len(model.tasks) <= 1000
    assert len(model.tasks) == 1000
    assert model.tasks.forgotten == 999_000
    assert sum(model.tasks.counts.values()) == 1000


def deep_size(root: object) -> int:
    """Bytes of every object reachable from ``root`` (classes, modules and functions excluded)."""
    seen: set[int] = set()
    stack = [root]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (type, types.ModuleType, types.FunctionType)):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


@pytest.mark.timeout(900)
@pytest.mark.slow
def test_the_model_memory_with_a_million_tasks_run_stays_bounded():
    """1,000,000 tasks submitted, started and finished on 8 workers, through the default ring of 100,000.

    Prints the model's size (every object it holds) and the process's RSS growth: run with -s to see them.
    """
    workers = [f"worker|host{i}|{i}|abcd".encode() for i in range(8)]
    functions = ("square", "simulate", "load_csv", "fit_model")
    process = psutil.Process()
    gc.collect()
    rss_before = process.memory_info().rss
    model = DashboardModel()
    half_way = 0
    for start in range(0, 1_000_000, 5_000):
        batch = []
        for n in range(start, start + 5_000):
            worker, function, t = workers[n % 8], functions[n % 4], n / 1000
            batch.append(task_event(TaskEventKind.SUBMITTED, tid(n), t, function=function))
            batch.append(task_event(TaskEventKind.STARTED, tid(n), t + 0.001, worker, function, queue_wait=0.001))
            batch.append(
                task_event(
                    TaskEventKind.FINISHED,
                    tid(n),
                    t + 0.002,
                    worker,
                    function,
                    queue_wait=0.001,
                    run=0.001,
                    peak_memory=n,
                )
            )
        model.apply(events(batch, start / 1000 + 5, WALL + start / 1000))
        workers_now = [worker_status(w) for w in workers]
        model.apply(snapshot(start / 1000 + 5, WALL + start / 1000, workers_now, totals={"finished": start}))
        if start == 500_000:
            half_way = deep_size(model)
    gc.collect()
    rss_growth = process.memory_info().rss - rss_before
    held = deep_size(model)
    assert len(model.tasks) == 100_000
    assert model.tasks.forgotten == 900_000
    assert model.tasks.counts["finished"] == 100_000
    mib = 2**20
    print(
        f"\nmodel after 1,000,000 tasks (ring 100,000): {held / mib:.1f} MiB of objects "
        f"(half way: {half_way / mib:.1f} MiB); process RSS grew {rss_growth / mib:.1f} MiB"
    )
    assert held < 1.05 * half_way  # bounded: the second half million adds nothing
    assert held < 100 * mib


def test_snapshots_make_the_overview_series_and_the_rate():
    model = DashboardModel(history_seconds=10)
    for i in range(20):
        model.apply(
            snapshot(
                float(i),
                WALL + i,
                [worker_status(W1, cpu=50.0, rss=100), worker_status(W2, cpu=25.0, rss=50)],
                totals={"finished": 10 * i, "failed": i},
                by_state={"queued": 3, "waiting": 1, "assigned": 5, "running": 2},
            )
        )
    overview = model.overview()
    series = overview["series"]
    assert series["time"][0] >= WALL + 19 - 10  # only the last history_seconds
    assert series["tasks_per_second"][-1] == pytest.approx(11.0)
    # Tasks in a worker's queue (assigned, not started) wait: they are not running.
    assert series["queued"][-1] == 9 and series["running"][-1] == 2 and series["workers"][-1] == 2
    assert series["cpu_percent"][-1] == 75.0 and series["rss_bytes"][-1] == 150
    assert overview["summary"]["workers"] == 2 and overview["summary"]["connected"] is True


def test_workers_have_sparklines_and_disappear_when_they_leave():
    model = DashboardModel()
    running = [RunningTask(tid(3), "square", CLIENT, 1.5)]
    for i in range(3):
        model.apply(snapshot(float(i), WALL + i, [worker_status(W1, running, cpu=10.0 * i), worker_status(W2)]))
    [alpha, beta] = model.workers_view()
    assert alpha["worker"] == "worker|alpha|1|aaaa" and alpha["cpu_history"] == [0.0, 10.0, 20.0]
    assert alpha["running"] == [
        {"task_id": tid(3).hex(), "function": "square", "client": CLIENT.decode(), "running_seconds": 1.5}
    ]
    assert beta["state"] == "active" and beta["running"] == []
    stream = model.stream_view(60)
    assert stream["runs"][0]["state"] == "running" and stream["runs"][0]["start"] == WALL + 2 - 1.5
    model.apply(snapshot(3.0, WALL + 3, [worker_status(W2)]))
    assert [worker["worker"] for worker in model.workers_view()] == ["worker|beta|2|bbbb"]


def test_clients_and_peer_events():
    model = DashboardModel()
    cluster = FakeCluster([W1, W2])
    for message in cluster.step():
        model.apply(message)
    view = model.clients_view()
    assert view["clients"][0]["client"] == CLIENT.decode()
    assert {event["kind"] for event in view["peer_events"]} == {"worker_joined", "client_joined"}
    model.apply(events([], 5.0, WALL, peers=[PeerEventRecord(PeerEventKind.WORKER_DIED, 5.0, W1, "silent")], dropped=4))
    assert model.clients_view()["peer_events"][0] == {
        "time": WALL,
        "kind": "worker_died",
        "peer": "worker|alpha|1|aaaa",
        "detail": "silent",
    }
    assert model.summary()["events_dropped"] == 4


def test_the_stream_keeps_only_its_window():
    model = DashboardModel()
    model.apply(
        events([task_event(TaskEventKind.FINISHED, tid(n), float(n), W1, run=0.5) for n in range(100)], 100.0, WALL)
    )
    runs = model.stream_view(window_seconds=10)["runs"]
    assert [run["task_id"] for run in runs] == [tid(n).hex() for n in range(89, 100)]


def test_query_filters_sorts_and_pages():
    table = TaskTable(ring_size=100)
    for n in range(30):
        function = "alpha" if n % 3 else "gamma"
        table.apply(task_event(TaskEventKind.STARTED, tid(n), worker=W1 if n % 2 else W2, function=function), WALL + n)
        if n % 5 == 0:
            table.apply(
                task_event(TaskEventKind.FINISHED, tid(n), worker=W1, function=function, run=float(n)), WALL + n + 1
            )
    page = table.query(state="finished", sort="run_seconds", descending=True, limit=2)
    assert page.total == 6 and [row.run_seconds for row in page.rows] == [25.0, 20.0]
    page = table.query(text="GAMMA", sort="task_id", descending=False, offset=3, limit=3)
    assert page.total == 10 and [row.task_id for row in page.rows] == [tid(9), tid(12), tid(15)]
    assert table.query(text="gamma|2", limit=100).total == 0
    assert table.query(text="worker|beta", limit=100).total == 12  # even tasks, less three that finished on alpha
    newest = table.query(limit=2)
    assert [row.task_id for row in newest.rows] == [tid(29), tid(28)]
    with pytest.raises(ValueError, match="unknown sort column"):
        table.query(sort="nope")
    with pytest.raises(ValueError, match="unknown state"):
        table.query(state="nope")
