"""`scaler CONFIG.toml` with a [ui] section starts the dashboard beside the cluster, and stops it with the rest."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest

from scaler.io.sockets import free_tcp_address
from tests.integration.conftest import descendants, wait_no_descendants
from tests.ui.browser import wait_for


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def write_config(path: Path, address: str, ui_port: int, workers: bool = True) -> Path:
    cluster = "[cluster]\nn_workers = 2\n" if workers else ""
    path.write_text(
        f'[scheduler]\naddress = "{address}"\n\n{cluster}\n[ui]\nui_address = "127.0.0.1:{ui_port}"\n'
        "tasks_ring_size = 1000\n"
    )
    return path


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_launcher_starts_and_stops_the_dashboard(tmp_path: Path):
    before = descendants()
    address = free_tcp_address()
    ui_port = int(free_tcp_address().rpartition(":")[2])
    path = write_config(tmp_path / "cluster.toml", address, ui_port)
    output = tmp_path / "launcher.out"
    with open(output, "wb") as log:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "scaler.cli.launcher", str(path)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        url = f"http://127.0.0.1:{ui_port}"
        wait_for(lambda: get_json(url + "/api/tasks")["ring_size"] == 1000, 60, "the dashboard's [ui] settings")
        wait_for(lambda: get_json(url + "/api/summary")["workers"] == 2, 60, "the [scheduler]'s feed, with 2 workers")
        launcher.send_signal(signal.SIGTERM)
        assert launcher.wait(timeout=60) == 0, output.read_text()
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    assert wait_no_descendants(before) == set()
    text = output.read_text()
    assert "started [ui]" in text and "scaler_ui: stopped" in text, text


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_dashboard_exits_with_its_launcher(tmp_path: Path):
    """The launcher starts it with --exit-with-parent: a killed launcher leaves no dashboard behind."""
    ui_port = int(free_tcp_address().rpartition(":")[2])
    path = write_config(tmp_path / "cluster.toml", free_tcp_address(), ui_port, workers=False)
    launcher = subprocess.Popen([sys.executable, "-m", "scaler.cli.launcher", str(path)], stdout=subprocess.DEVNULL)
    children: list[psutil.Process] = []
    try:
        wait_for(lambda: get_json(f"http://127.0.0.1:{ui_port}/api/tasks")["ring_size"] == 1000, 60, "the dashboard")
        children = psutil.Process(launcher.pid).children(recursive=True)  # once orphaned, not ours to list
        assert any("scaler.cli.ui" in child.cmdline() for child in children)
    finally:
        launcher.kill()
        launcher.wait()
    _, alive = psutil.wait_procs(children, timeout=30)
    for straggler in alive:
        straggler.kill()
    assert not alive, [process.cmdline() for process in alive]
