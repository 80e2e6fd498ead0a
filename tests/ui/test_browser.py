"""The dashboard in a real browser (headless Chromium through Selenium), as a person would use it.

Each view is opened, its content checked, and a screenshot saved under the test's tmp_path (and under
$SCALER_DOCS_SCREENSHOTS, e.g. docs/images/monitoring, when set). Skipped only when chromium or
chromium-driver is missing.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import pytest

from scaler.io.sockets import free_tcp_address
from tests.ui import cluster_tasks
from tests.ui.browser import (
    SCREENSHOTS_ENV,
    DashboardProcess,
    require_chromium,
    save_screenshot,
    start_chromium,
    wait_for,
)
from tests.ui.fakes import FakeCluster, FakeFeedPublisher

WORKERS = [b"worker|alpha|101|a1b2c3d4", b"worker|beta|102|e5f6a7b8"]


def text_of(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.CSS_SELECTOR, css).text


def number(text: str) -> int:
    return int(text.replace(",", "").replace("\u202f", "") or 0)


def seconds(text: str) -> float:
    """``"275.0 ms"`` -> 0.275, as the page writes durations; an empty cell (not ended) is 0."""
    if not text:
        return 0.0
    value, unit = text.split()
    return float(value) * {"µs": 1e-6, "ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}[unit]


def matching_total(browser) -> int:
    """The tasks view's count of the tasks that match its filter ("page 1 of 3 · 1,234 tasks")."""
    text = text_of(browser, "#tasks-page")
    return int(text.rpartition("·")[2].split()[0].replace(",", "")) if "·" in text else -1


def longest_first(cells: list[str]) -> bool:
    times = [seconds(cell) for cell in cells]
    return len(times) > 1 and times[0] > 0 and times == sorted(times, reverse=True)


def column(driver: Any, index: int) -> list[str]:
    """The texts of the tasks table's column ``index`` (from 1), read in one go: the table re-renders live."""
    script = "return [...document.querySelectorAll(arguments[0])].map((cell) => cell.textContent.trim());"
    return driver.execute_script(script, f"#tasks-table tbody tr td:nth-child({index})")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    require_chromium()
    driver = start_chromium(tmp_path / "profile")
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def fake_feed() -> Iterator[str]:
    address = free_tcp_address()
    publisher = FakeFeedPublisher(address, FakeCluster(WORKERS), interval=0.5).start()
    try:
        yield address
    finally:
        publisher.stop()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_every_view_against_a_fake_feed(browser: Any, fake_feed: str, tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    dashboard = DashboardProcess(fake_feed, log_path=tmp_path / "ui.log")
    try:
        dashboard.wait_healthy()
        browser.get(dashboard.url + "/#overview")
        wait_for(lambda: text_of(browser, "#s-workers") == "2", what="2 workers in the header")
        first = int(text_of(browser, "#s-finished").replace(",", ""))
        wait_for(lambda: int(text_of(browser, "#s-finished").replace(",", "")) > first + 2, what="a rising count")
        assert "live" in text_of(browser, "#feed-status")
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#chart-rate polyline"), what="the rate graph")
        save_screenshot(browser, tmp_path, "dashboard-overview", for_docs=False)

        browser.find_element(By.CSS_SELECTOR, 'a[data-view="workers"]').click()
        wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#workers-table tbody tr")) == 2, what="2 rows")
        table = text_of(browser, "#workers-table")
        assert "worker|alpha|101|a1b2c3d4" in table and "worker|beta|102|e5f6a7b8" in table
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#workers-table svg.spark polyline"), what="sparklines")
        save_screenshot(browser, tmp_path, "dashboard-workers", for_docs=False)

        browser.find_element(By.CSS_SELECTOR, 'a[data-view="stream"]').click()
        wait_for(lambda: "simulate" in text_of(browser, "#stream-legend"), what="the functions' legend")
        assert "on 2 workers" in text_of(browser, "#stream-count")
        save_screenshot(browser, tmp_path, "dashboard-stream", for_docs=False)

        browser.get(dashboard.url + "/#tasks")
        wait_for(lambda: "finished" in column(browser, 4), what="a finished task in the table")
        browser.find_element(By.CSS_SELECTOR, 'th[data-sort="function"]').click()
        wait_for(
            lambda: (
                "sorted-asc" in browser.find_element(By.CSS_SELECTOR, 'th[data-sort="function"]').get_attribute("class")
            )
        )
        wait_for(
            lambda: column(browser, 3) == sorted(column(browser, 3)) and len(set(column(browser, 3))) > 1,
            what="sorted by function",
        )
        browser.find_element(By.CSS_SELECTOR, 'th[data-sort="function"]').click()
        wait_for(lambda: column(browser, 3) == sorted(column(browser, 3), reverse=True), what="sorted backwards")
        Select(browser.find_element(By.ID, "tasks-state")).select_by_value("failed")
        wait_for(lambda: column(browser, 4) and set(column(browser, 4)) == {"failed"}, what="only failed tasks")
        Select(browser.find_element(By.ID, "tasks-state")).select_by_value("")
        browser.find_element(By.ID, "tasks-filter").send_keys("load_csv")
        wait_for(lambda: column(browser, 3) and set(column(browser, 3)) == {"■ load_csv"}, what="only load_csv tasks")
        assert "page 1 of" in text_of(browser, "#tasks-page")
        save_screenshot(browser, tmp_path, "dashboard-tasks", for_docs=False)

        browser.find_element(By.CSS_SELECTOR, 'a[data-view="clients"]').click()
        wait_for(lambda: "client|laptop|100|c0ffee00" in text_of(browser, "#clients-table"), what="the client")
        save_screenshot(browser, tmp_path, "dashboard-clients", for_docs=False)
        errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
        assert not errors, errors
    finally:
        dashboard.stop()
    assert dashboard.process.returncode == 0
    assert all(
        (tmp_path / f"dashboard-{view}.png").stat().st_size > 10_000
        for view in ("overview", "workers", "stream", "tasks", "clients")
    )


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_token_page(browser: Any, fake_feed: str, tmp_path: Path):
    from selenium.webdriver.common.by import By

    dashboard = DashboardProcess(fake_feed, "--ui-token", "open-sesame", log_path=tmp_path / "ui.log")
    try:
        dashboard.wait_healthy()
        browser.get(dashboard.url + "/")
        wait_for(lambda: browser.find_elements(By.ID, "token"), what="the token page")
        assert "needs its token" in browser.page_source
        save_screenshot(browser, tmp_path, "dashboard-token")
        browser.find_element(By.ID, "token").send_keys("wrong")
        browser.find_element(By.ID, "login-submit").click()
        wait_for(lambda: "That is not the token" in browser.page_source, what="the refusal")
        browser.find_element(By.ID, "token").send_keys("open-sesame")
        browser.find_element(By.ID, "login-submit").click()
        wait_for(lambda: text_of(browser, "#s-workers") == "2", what="the dashboard, after the token")
    finally:
        dashboard.stop(signal.SIGTERM)
    assert dashboard.process.returncode == 0


class Workload:
    """A client that keeps the cluster busy with a mix of functions until stopped."""

    def __init__(self, address: str):
        self.address = address
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        from scaler import Client

        try:
            with Client(address=self.address, timeout_seconds=30, profiling=True) as client:
                wave = 0
                while not self.stop.is_set():
                    futures = [client.submit(cluster_tasks.square, i) for i in range(20)]
                    futures += [client.submit(cluster_tasks.simulate, 10_000) for _ in range(4)]
                    futures += [client.submit(cluster_tasks.load_rows, 50_000) for _ in range(3)]
                    futures += [client.submit(cluster_tasks.check_input, wave * 3 + i) for i in range(3)]
                    for future in futures:
                        future.exception(timeout=60)  # failures are part of the mix
                    wave += 1
        except BaseException as error:  # reported by the test
            self.error = error

    def __enter__(self) -> Workload:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_every_view_of_a_real_cluster(browser: Any, tmp_path: Path):
    """A real scheduler and two workers run a mix of tasks; the dashboard shows them as they go."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from scaler import SchedulerClusterCombo

    cloudpickle.register_pickle_by_value(cluster_tasks)
    with SchedulerClusterCombo(n_workers=2, worker_names=("alpha", "beta"), logging_level="WARNING") as combo:
        monitor_address = combo.get_monitor_address()
        assert monitor_address is not None
        dashboard = DashboardProcess(monitor_address, log_path=tmp_path / "ui.log")
        try:
            dashboard.wait_healthy()
            with Workload(combo.get_address()) as workload:
                browser.get(dashboard.url + "/#overview")
                wait_for(lambda: text_of(browser, "#s-workers") == "2", what="2 workers in the header")
                wait_for(lambda: number(text_of(browser, "#s-finished")) > 0, what="finished tasks")
                first = number(text_of(browser, "#s-finished"))
                wait_for(lambda: number(text_of(browser, "#s-finished")) > first + 20, what="a rising count")
                wait_for(lambda: "live" in text_of(browser, "#feed-status"), what="a live feed")
                # A few more points on the graphs; more for the docs' screenshots.
                time.sleep(40 if os.environ.get(SCREENSHOTS_ENV) else 8)
                save_screenshot(browser, tmp_path, "dashboard-overview")

                browser.find_element(By.CSS_SELECTOR, 'a[data-view="workers"]').click()
                wait_for(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#workers-table tbody tr")) == 2)
                table = text_of(browser, "#workers-table")
                assert "worker|alpha|" in table and "worker|beta|" in table, table
                wait_for(
                    lambda: any(f in text_of(browser, "#workers-table") for f in ("square", "simulate", "load_rows")),
                    what="a worker's current task",
                )
                save_screenshot(browser, tmp_path, "dashboard-workers")

                browser.find_element(By.CSS_SELECTOR, 'a[data-view="stream"]').click()
                Select(browser.find_element(By.ID, "stream-window")).select_by_value("30")
                wait_for(
                    lambda: (
                        "simulate" in text_of(browser, "#stream-legend")
                        and "square" in text_of(browser, "#stream-legend")
                    ),
                    what="the functions in the stream's legend",
                )
                save_screenshot(browser, tmp_path, "dashboard-stream")

                browser.find_element(By.CSS_SELECTOR, 'a[data-view="tasks"]').click()
                wait_for(lambda: "finished" in column(browser, 4), what="a finished task in the table")
                browser.find_element(By.CSS_SELECTOR, 'th[data-sort="run_seconds"]').click()
                browser.find_element(By.CSS_SELECTOR, 'th[data-sort="run_seconds"]').click()  # longest first
                wait_for(lambda: longest_first(column(browser, 9)), what="the longest run time first")
                Select(browser.find_element(By.ID, "tasks-state")).select_by_value("failed")
                wait_for(
                    lambda: column(browser, 3) and all(name.endswith(".check_input") for name in column(browser, 3)),
                    what="the failures",
                )
                Select(browser.find_element(By.ID, "tasks-state")).select_by_value("")
                browser.find_element(By.ID, "tasks-filter").send_keys("load_rows")
                wait_for(
                    lambda: column(browser, 3) and all(name.endswith(".load_rows") for name in column(browser, 3)),
                    what="load_rows only",
                )
                only_load_rows = matching_total(browser)
                browser.find_element(By.ID, "tasks-filter").clear()
                browser.find_element(By.ID, "tasks-filter").send_keys(" ")  # fires input: back to every task
                # (Not "several functions on the page": sorted longest first, one page may hold only simulate.)
                wait_for(lambda: matching_total(browser) > only_load_rows, what="every task again")
                save_screenshot(browser, tmp_path, "dashboard-tasks")

                browser.find_element(By.CSS_SELECTOR, 'a[data-view="clients"]').click()
                wait_for(lambda: "client|" in text_of(browser, "#clients-table"), what="the client")
                save_screenshot(browser, tmp_path, "dashboard-clients")
            assert workload.error is None, workload.error
            errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
            assert not errors, errors
        finally:
            dashboard.stop()
    assert dashboard.process.returncode == 0
