"""The dashboard reads a keyed scheduler's feed with the monitor key pair, and hears nothing without it."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from scaler import SchedulerClusterCombo
from scaler.cli.keygen import make_keys
from tests.ui.browser import DashboardProcess, wait_for


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_dashboard_reads_a_keyed_feed_with_the_monitor_keys(tmp_path: Path):
    keys = tmp_path / "keys"
    make_keys(keys)
    with SchedulerClusterCombo(n_workers=1, keys_dir=str(keys), logging_level="WARNING") as combo:
        monitor_address = combo.get_monitor_address()
        assert monitor_address is not None
        keyed = DashboardProcess(monitor_address, "--keys-dir", str(keys), log_path=tmp_path / "keyed.log")
        bare = DashboardProcess(monitor_address, log_path=tmp_path / "bare.log")
        try:
            keyed.wait_healthy()
            wait_for(lambda: get_json(keyed.url + "/api/summary")["workers"] == 1, what="the keyed cluster's worker")
            time.sleep(3)  # several snapshots went out: none reached the dashboard without keys
            health = get_json(bare.url + "/api/summary")
            assert health["connected"] is False and health["workers"] == 0
        finally:
            keyed.stop()
            bare.stop()
    assert keyed.process.returncode == 0 and bare.process.returncode == 0
