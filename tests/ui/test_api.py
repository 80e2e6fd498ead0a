"""The dashboard's HTTP API over a model fed by hand (starlette's TestClient: no server, no feed)."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from scaler.ui.app import Dashboard, create_app
from scaler.ui.model import DashboardModel
from scaler.ui.security import TOKEN_COOKIE
from tests.ui.fakes import FakeCluster

W1 = b"worker|alpha|1|aaaa"
W2 = b"worker|beta|2|bbbb"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def dashboard(clock: Clock) -> Dashboard:
    dashboard = Dashboard(DashboardModel(tasks_ring_size=50), feed_silent_seconds=5.0, clock=clock)
    cluster = FakeCluster([W1, W2])
    for _ in range(10):
        dashboard.apply(cluster.step())
    return dashboard


def test_the_views(dashboard: Dashboard):
    client = TestClient(create_app(dashboard))
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    summary = client.get("/api/summary").json()
    assert summary["workers"] == 2 and summary["clients"] == 1 and summary["tasks_total"]["submitted"] == 20
    overview = client.get("/api/overview").json()
    assert len(overview["series"]["time"]) == 10 and overview["series"]["workers"][-1] == 2
    workers = client.get("/api/workers").json()
    assert [worker["worker"] for worker in workers] == ["worker|alpha|1|aaaa", "worker|beta|2|bbbb"]
    assert len(workers[0]["cpu_history"]) == 10 and len(workers[0]["running"]) == 1
    stream = client.get("/api/stream?window=600").json()
    assert stream["workers"] == ["worker|alpha|1|aaaa", "worker|beta|2|bbbb"]
    assert {run["state"] for run in stream["runs"]} >= {"finished", "running"}
    clients = client.get("/api/clients").json()
    assert clients["clients"][0]["done"] > 0 and clients["peer_events"][0]["kind"] == "client_joined"


def test_tasks_are_filtered_sorted_and_paged_by_the_server(dashboard: Dashboard):
    client = TestClient(create_app(dashboard))
    first = client.get("/api/tasks", params={"page_size": 5}).json()
    assert first["total"] == 20 and first["held"] == 20 and first["ring_size"] == 50 and len(first["rows"]) == 5
    assert first["rows"][0]["task_id"] == (20).to_bytes(16, "big").hex()  # newest first
    second = client.get("/api/tasks", params={"page_size": 5, "page": 2}).json()
    assert second["rows"][0]["task_id"] == (15).to_bytes(16, "big").hex()
    failed = client.get("/api/tasks", params={"state": "failed"}).json()
    assert failed["total"] == failed["counts"]["failed"] > 0
    assert {row["state"] for row in failed["rows"]} == {"failed"}
    by_function = client.get("/api/tasks", params={"q": "SIMULATE", "sort": "worker", "order": "asc"}).json()
    assert by_function["total"] > 0 and {row["function"] for row in by_function["rows"]} == {"simulate"}
    workers = [row["worker"] for row in by_function["rows"]]
    assert workers == sorted(workers)
    for bad in ({"sort": "nope"}, {"state": "nope"}, {"order": "up"}, {"page": "x"}):
        response = client.get("/api/tasks", params=bad)
        assert response.status_code == 400 and "error" in response.json()


def test_live_updates_are_server_sent_events(dashboard: Dashboard):
    client = TestClient(create_app(dashboard, live_interval_seconds=0.01))
    with client.stream("GET", "/api/live?count=2") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        body = "".join(response.iter_text())
    assert body.count("event: summary") == 2 and '"workers": 2' in body


def test_health_turns_503_when_the_feed_is_silent(dashboard: Dashboard, clock: Clock):
    client = TestClient(create_app(dashboard))
    clock.now = 4.0
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["feed_silent_seconds"], body["feed_heard"]) == ("ok", 4.0, True)
    assert (body["workers"], body["clients"]) == (2, 1)
    clock.now = 6.0
    response = client.get("/health")
    assert response.status_code == 503 and response.json()["feed_silent_seconds"] == 6.0


def test_metrics_are_served_in_the_prometheus_format(dashboard: Dashboard):
    client = TestClient(create_app(dashboard))
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    samples = {
        sample.name + str(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }
    assert samples["scaler_clients[]"] == 1  # ClusterMetrics.update saw every message
    assert samples["scaler_tasks_total[('state', 'submitted')]"] == 20


def test_a_bad_message_is_logged_and_the_dashboard_goes_on(dashboard: Dashboard, caplog: pytest.LogCaptureFixture):
    version = dashboard.model.version
    dashboard.apply([object()])  # type: ignore[list-item]
    assert "dashboard model: a object failed" in caplog.text
    dashboard.apply(FakeCluster([W1]).step())
    assert dashboard.model.version == version + 3


def test_with_a_token_everything_but_health_asks_for_it(dashboard: Dashboard):
    client = TestClient(create_app(dashboard, token="s3cret"))
    page = client.get("/")
    assert page.status_code == 200 and 'name="token"' in page.text and "app.js" not in page.text
    for path in ("/api/summary", "/api/tasks", "/api/live?count=1", "/metrics", "/api/workers"):
        assert client.get(path).status_code == 401, path
    assert client.get("/health").status_code == 200
    assert client.get("/static/app.js").status_code == 200  # no cluster data in it
    assert client.get("/api/summary", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/api/summary", params={"token": "s3cret"}).status_code == 200
    assert client.get("/api/summary", headers={"Authorization": "Bearer wrong"}).status_code == 401
    refused = client.post("/login", data={"token": "wrong"}, follow_redirects=False)
    assert refused.status_code == 401 and "not the token" in refused.text
    accepted = client.post("/login", data={"token": "s3cret"}, follow_redirects=False)
    assert accepted.status_code == 303 and TOKEN_COOKIE in accepted.headers["set-cookie"]
    assert "httponly" in accepted.headers["set-cookie"].lower()
    assert client.get("/api/summary").status_code == 200  # the cookie now
    assert "app.js" in client.get("/").text
