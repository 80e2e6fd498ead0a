"""Headless Chromium for the dashboard's browser tests: Debian's chromium and chromium-driver, no network.

Selenium is given both binaries, so selenium-manager never runs (it would try to download a driver).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS_ENV = "SCALER_DOCS_SCREENSHOTS"  # e.g. docs/images/monitoring: also write the screenshots there


def require_chromium() -> None:
    """Skip the test, saying why, when chromium, chromium-driver or selenium is missing."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not (os.path.exists(path) and os.access(path, os.X_OK))]
    if missing:
        reason = f"browser test skipped: {', '.join(missing)} missing (apt-get install chromium chromium-driver)"
        print(reason)
        pytest.skip(reason)
    try:
        import selenium  # noqa: F401
    except ImportError:
        print("browser test skipped: selenium is not installed (pip install 'scaler[test]')")
        pytest.skip("selenium is not installed")


def start_chromium(profile_dir: Path, width: int = 1400, height: int = 900) -> Any:
    """A headless Chromium with a fresh profile in ``profile_dir``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",
        f"--window-size={width},{height}",
        f"--user-data-dir={profile_dir}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "the condition") -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except Exception as error:  # the page is still loading or re-rendering
            last_error = error
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last error: {last_error})")


def save_screenshot(driver: Any, tmp_path: Path, name: str, for_docs: bool = True) -> Path:
    """Save a PNG of the page under ``tmp_path``, and under $SCALER_DOCS_SCREENSHOTS when it is set and ``for_docs``."""
    path = tmp_path / f"{name}.png"
    driver.save_screenshot(str(path))
    docs = os.environ.get(SCREENSHOTS_ENV)
    if docs and for_docs:
        Path(docs).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(docs) / f"{name}.png")
    return path


class DashboardProcess:
    """``scaler_ui`` in a subprocess, reading ``monitor_address``, serving on a free loopback port."""

    def __init__(self, monitor_address: str, *extra: str, log_path: Path | None = None):
        from scaler.io.sockets import free_tcp_address

        self.port = int(free_tcp_address().rpartition(":")[2])
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log_path, "wb") if log_path is not None else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "scaler.cli.ui", monitor_address, "--ui-address", f"127.0.0.1:{self.port}", *extra],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until /health answers 200 (the dashboard serves, and the feed is heard)."""

        def healthy() -> bool:
            assert self.process.poll() is None, f"scaler_ui exited with {self.process.returncode}"
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                    return json.load(response)["feed_heard"] and response.status == 200
            except (urllib.error.URLError, ConnectionError):
                return False

        wait_for(healthy, timeout, "the dashboard to serve and hear the feed")

    def stop(self, sig: int = signal.SIGINT) -> None:
        """Send ``sig`` (SIGINT: as Ctrl-C; SIGTERM: as the launcher); kill after a deadline."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not subprocess.DEVNULL:
            self._log.close()
