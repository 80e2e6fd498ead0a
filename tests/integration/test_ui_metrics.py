"""ClusterMetrics fed by a real StatusFeed: from a plain PUB socket, then from a real scheduler and workers."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import zmq
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from scaler import Client, SchedulerClusterCombo
from scaler.monitor.feed import StatusFeed
from scaler.protocol.codec import encode
from scaler.protocol.messages import (
    SchedulerStatus,
    StatusEvents,
    StatusSnapshot,
    TaskEventKind,
    TaskEventRecord,
    WorkerState,
    WorkerStatus,
)
from scaler.ui.metrics import LIVE_TASK_STATES, ClusterMetrics
from tests.integration import tasks
from tests.integration.conftest import descendants, wait_no_descendants

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape_text(text: str) -> Samples:
    """Parse Prometheus text: {(sample name, sorted labels): value}."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.mark.timeout(30)
def test_metrics_from_a_pub_socket_through_status_feed() -> None:
    context: zmq.Context = zmq.Context()
    publisher = context.socket(zmq.PUB)
    port = publisher.bind_to_random_port("tcp://127.0.0.1")
    registry = CollectorRegistry()
    metrics = ClusterMetrics(registry)
    feed = StatusFeed(f"tcp://127.0.0.1:{port}", context=context)
    status = SchedulerStatus(
        b"scheduler|h|1|aa", "1", 3.0, 12.0, 1000, 5.0, 6.0, {"queued": 2}, {"finished": 9, "failed": 1}, 0, 0, 0
    )
    workers = [
        WorkerStatus(f"worker|{n}|1|aa".encode(), WorkerState.ACTIVE, {}, 0, [], 0, 0, 1, 1.0, 10, 0.1, 0)
        for n in range(3)
    ]
    snapshot = StatusSnapshot(0, 1.0, 1000.0, status, [], workers)
    finished = TaskEventRecord(TaskEventKind.FINISHED, 1.0, b"t", b"c", b"w", "f", 1, 0.0, 0.125, 0, "")
    try:
        # a SUB misses what is sent before it joins: send until the snapshot has arrived
        deadline = time.monotonic() + 10
        while metrics.health()["status"] != "ok" and time.monotonic() < deadline:
            publisher.send(encode([snapshot]))
            for message in feed.receive(0.05):
                metrics.update(message)
        publisher.send(encode([StatusEvents(2.0, 1001.0, [finished], [], 0)]))
        deadline = time.monotonic() + 10
        samples: Samples = {}
        while time.monotonic() < deadline:
            for message in feed.receive(0.05):
                metrics.update(message)
            samples = scrape_text(generate_latest(registry).decode())
            if value(samples, "scaler_task_duration_seconds_count", state="finished"):
                break
        assert value(samples, "scaler_task_duration_seconds_sum", state="finished") == 0.125
        assert value(samples, "scaler_tasks_total", state="finished") == 9
        assert value(samples, "scaler_tasks_total", state="failed") == 1
        assert value(samples, "scaler_tasks_queued") == 2
        assert value(samples, "scaler_workers", state="active") == 3
    finally:
        feed.close()
        publisher.close(linger=0)
        context.term()


class FeedPump:
    """Reads a StatusFeed on its own thread into ClusterMetrics, as scaler_ui does."""

    def __init__(self, monitor_address: str, metrics: ClusterMetrics) -> None:
        self.metrics = metrics
        self.peer_events: list[tuple[str, str, str]] = []  # (kind, peer, detail): shown when an assertion fails
        self._feed = StatusFeed(monitor_address)  # used by the pump's thread only, then closed by stop()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="feed pump", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for message in self._feed.receive(0.1):
                self.metrics.update(message)
                if isinstance(message, StatusEvents):
                    self.peer_events.extend((p.kind.name, p.peer_id.decode(), p.detail) for p in message.peers)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._feed.close()


def workers(samples: Samples) -> float:
    """Workers in any state (a busy machine can make a heartbeat late, and a worker briefly lost)."""
    return sum(value(samples, "scaler_workers", state=state) for state in ("active", "draining", "lost"))


def wait_for(registry: CollectorRegistry, done: Callable[[Samples], bool], timeout: float = 30.0) -> Samples:
    """Scrape until ``done(samples)`` or ``timeout``; the last scrape."""
    deadline = time.monotonic() + timeout
    samples = scrape_text(generate_latest(registry).decode())
    while not done(samples) and time.monotonic() < deadline:
        time.sleep(0.1)
        samples = scrape_text(generate_latest(registry).decode())
    return samples


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_metrics_match_what_a_real_cluster_did() -> None:
    n_workers, n_tasks, n_failing = 2, 30, 7
    registry = CollectorRegistry()
    metrics = ClusterMetrics(registry)
    before = descendants()
    with SchedulerClusterCombo(n_workers=n_workers, logging_level="WARNING") as combo:
        monitor_address = combo.get_monitor_address()
        assert monitor_address is not None
        pump = FeedPump(monitor_address, metrics)
        try:
            # every worker has joined, and the pump hears the feed before the first task: no event is missed
            wait_for(registry, lambda s: s.get(("scaler_workers", (("state", "active"),))) == n_workers)
            assert metrics.health()["status"] == "ok"
            with Client(address=combo.get_address(), timeout_seconds=30) as client:
                futures = [
                    client.submit(tasks.raise_value_error, "boom")
                    if i < n_failing
                    else client.submit(tasks.sleep_return, 0.02, i)
                    for i in range(n_tasks)
                ]
                concurrent.futures.wait(futures, timeout=60)
                assert sum(future.exception() is not None for future in futures) == n_failing

                finished = n_tasks - n_failing
                samples = wait_for(
                    registry,
                    lambda s: (
                        s.get(("scaler_tasks_total", (("state", "finished"),))) == finished
                        and s.get(("scaler_tasks_total", (("state", "failed"),))) == n_failing
                        and s.get(("scaler_task_duration_seconds_count", (("state", "failed"),))) == n_failing
                    ),
                )
            assert value(samples, "scaler_tasks_total", state="finished") == finished
            assert value(samples, "scaler_tasks_total", state="failed") == n_failing
            assert value(samples, "scaler_tasks_total", state="submitted") == n_tasks
            assert value(samples, "scaler_tasks_total", state="cancelled") == 0
            assert workers(samples) == n_workers
            assert value(samples, "scaler_scheduler_up") == 1
            assert len([key for key in samples if key[0] == "scaler_worker_rss_bytes"]) == n_workers
            assert value(samples, "scaler_status_events_dropped_total") == 0
            assert value(samples, "scaler_task_duration_seconds_count", state="finished") == finished
            assert value(samples, "scaler_task_duration_seconds_count", state="failed") == n_failing
            # every finished task slept 0.02 s on its worker
            assert value(samples, "scaler_task_duration_seconds_sum", state="finished") >= 0.02 * finished
            assert value(samples, "scaler_task_queue_wait_seconds_count") == n_tasks
            assert value(samples, "scaler_client_events_total", event="joined") == 1

            # A worker that goes takes its series with it. SIGKILL, not SIGTERM: a drained worker's late
            # heartbeat can register it again at the scheduler for a while (reported to the lead).
            leaving = combo.worker_pids()[0]
            os.kill(leaving, signal.SIGKILL)
            after = wait_for(
                registry,
                lambda s: (
                    len([key for key in s if key[0] == "scaler_worker_rss_bytes"]) == n_workers - 1
                    and s.get(("scaler_worker_events_total", (("event", "died"),))) == 1
                ),
            )
            assert workers(after) == n_workers - 1
            per_worker = [dict(key[1])["worker"] for key in after if key[0] == "scaler_worker_rss_bytes"]
            assert len(per_worker) == n_workers - 1
            assert not [name for name in per_worker if f"|{leaving}|" in name]
            assert value(after, "scaler_clients") == 0
            assert value(after, "scaler_worker_events_total", event="died") == 1, pump.peer_events
            assert value(after, "scaler_worker_events_total", event="left") == 0, pump.peer_events
        finally:
            pump.stop()
    assert not wait_no_descendants(before)  # the killed worker's processors went with it


def http_get(url: str, token: str | None = None) -> tuple[int, str]:
    """GET ``url``: (status, body), with ``Authorization: Bearer token`` if given."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_scaler_ui_serves_metrics_that_match_a_real_run(tmp_path: Path) -> None:
    from tests.ui.browser import DashboardProcess  # the dashboard's own test helper: scaler_ui as a process

    n_workers, n_tasks, n_failing, token = 2, 40, 5, "metrics-token"
    before = descendants()
    # a snapshot every 0.2 s: several of them fall inside the run, for the scrape during it
    with SchedulerClusterCombo(n_workers=n_workers, status_interval_seconds=0.2, logging_level="WARNING") as combo:
        monitor_address = combo.get_monitor_address()
        assert monitor_address is not None
        dashboard = DashboardProcess(monitor_address, "--ui-token", token, log_path=tmp_path / "ui.log")
        try:
            dashboard.wait_healthy()

            def scrape() -> Samples:
                status, text = http_get(dashboard.url + "/metrics", token)
                assert status == 200, text
                return scrape_text(text)

            def scrape_until(done: Callable[[Samples], bool], timeout: float = 30.0) -> Samples:
                deadline = time.monotonic() + timeout
                samples = scrape()
                while not done(samples) and time.monotonic() < deadline:
                    time.sleep(0.2)
                    samples = scrape()
                return samples

            assert http_get(dashboard.url + "/metrics")[0] == 401  # /metrics asks for the token like the rest
            scrape_until(lambda s: s.get(("scaler_workers", (("state", "active"),))) == n_workers)
            with Client(address=combo.get_address(), timeout_seconds=30) as client:
                futures = [
                    client.submit(tasks.raise_value_error, "boom")
                    if i % 8 == 0
                    else client.submit(tasks.sleep_return, 0.1, i)
                    for i in range(n_tasks)
                ]
                # during the run: a scrape sees every task submitted and some not ended yet
                during = scrape_until(
                    lambda s: (
                        s.get(("scaler_tasks_total", (("state", "submitted"),))) == n_tasks
                        and s.get(("scaler_tasks_total", (("state", "finished"),)), 0) < n_tasks - n_failing
                    )
                )
                in_flight = sum(value(during, "scaler_tasks_live", state=state) for state in LIVE_TASK_STATES)
                ended = sum(value(during, "scaler_tasks_total", state=state) for state in ("finished", "failed"))
                assert in_flight > 0
                assert in_flight + ended == n_tasks  # each task is either held by the scheduler or has ended
                concurrent.futures.wait(futures, timeout=60)
                assert sum(future.exception() is not None for future in futures) == n_failing

            finished = n_tasks - n_failing
            samples = scrape_until(
                lambda s: (
                    s.get(("scaler_tasks_total", (("state", "finished"),))) == finished
                    and s.get(("scaler_tasks_total", (("state", "failed"),))) == n_failing
                    and s.get(("scaler_task_duration_seconds_count", (("state", "finished"),))) == finished
                    and s.get(("scaler_clients", ())) == 0
                )
            )
            assert value(samples, "scaler_tasks_total", state="finished") == finished
            assert value(samples, "scaler_tasks_total", state="failed") == n_failing
            assert value(samples, "scaler_task_duration_seconds_count", state="finished") == finished
            assert value(samples, "scaler_task_duration_seconds_count", state="failed") == n_failing
            assert value(samples, "scaler_task_duration_seconds_sum", state="finished") >= 0.1 * finished
            assert value(samples, "scaler_task_queue_wait_seconds_count") == n_tasks
            assert workers(samples) == n_workers
            assert sum(value(samples, "scaler_tasks_live", state=state) for state in LIVE_TASK_STATES) == 0
            assert value(samples, "scaler_scheduler_up") == 1
            assert value(samples, "scaler_scheduler_rss_bytes") > 0

            status, body = http_get(dashboard.url + "/health")  # no token needed
            assert status == 200, body
        finally:
            dashboard.stop()
    assert not wait_no_descendants(before)
