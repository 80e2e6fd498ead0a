"""ClusterMetrics fed by a real StatusFeed: from a plain PUB socket, then from a real scheduler and workers."""

from __future__ import annotations

import time

import pytest
import zmq
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

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
from scaler.ui.metrics import ClusterMetrics

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
