"""`scaler_ui` as a process: it reads a feed (a plain zmq PUB socket here) and serves what it heard."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from scaler.io.sockets import free_tcp_address
from tests.ui.browser import DashboardProcess, wait_for
from tests.ui.fakes import FakeCluster, FakeFeedPublisher


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.mark.timeout(90)
def test_the_dashboard_serves_what_the_feed_says_and_health_follows_the_feed(tmp_path: Path):
    address = free_tcp_address()
    publisher = FakeFeedPublisher(address, FakeCluster([b"worker|a|1|x", b"worker|b|2|y", b"worker|c|3|z"]), 0.2)
    publisher.start()
    dashboard = DashboardProcess(address, "--feed-silent-seconds", "2", log_path=tmp_path / "ui.log")
    try:
        dashboard.wait_healthy()
        wait_for(lambda: json.loads(get(dashboard.url + "/api/summary")[1])["workers"] == 3, what="3 workers")
        status, text = get(dashboard.url + "/metrics")
        assert status == 200
        values = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples if not s.labels}
        assert values["scaler_clients"] == 1
        publisher.stop()  # the scheduler goes away: /health says so
        wait_for(lambda: get(dashboard.url + "/health")[0] == 503, 15, "/health to answer 503")
        assert json.loads(get(dashboard.url + "/health")[1])["feed_silent_seconds"] > 2
    finally:
        publisher.stop()
        dashboard.stop(signal.SIGINT)
    assert dashboard.process.returncode == 0
