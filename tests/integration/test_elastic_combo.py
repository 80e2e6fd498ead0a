"""``SchedulerClusterCombo(n_workers=..., max_workers=...)``: the embedded elastic default, end to end."""

from __future__ import annotations

import time

import psutil
import pytest

from scaler import Client, SchedulerClusterCombo
from scaler.cli.keygen import add_key, make_keys
from scaler.protocol.messages import WorkerState
from tests.integration import tasks


def active_workers(client: Client) -> int:
    return sum(1 for worker in client.status().workers if worker.state == WorkerState.ACTIVE)


def wait_workers(client: Client, want: int, timeout: float) -> float:
    started = time.monotonic()
    most = 0
    while True:
        count = active_workers(client)
        most = max(most, count)
        assert most <= 3, f"{most} workers: above max_workers"
        if count == want:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, f"{count} workers, not {want}, after {timeout:g}s"
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_combo_with_max_workers_grows_under_a_burst_and_shrinks_back_when_idle() -> None:
    combo = SchedulerClusterCombo(n_workers=1, max_workers=3, worker_idle_seconds=2, logging_level="WARNING")
    with combo, Client(address=combo.get_address(), timeout_seconds=60) as client:
        wait_workers(client, 1, 30)
        futures = [client.submit(tasks.sleep_return, 1.0, i) for i in range(12)]
        wait_workers(client, 3, 60)
        assert [future.result(timeout=120) for future in futures] == list(range(12))
        assert len(combo.worker_pids()) == 3
        wait_workers(client, 1, 60)
        assert client.status().scheduler.tasks_total.get("retried", 0) == 0
        pids = combo.worker_pids()
    for pid in pids:  # shutdown leaves no worker behind, managed or not
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.timeout(60)
def test_n_workers_alone_keeps_a_fixed_cluster_with_no_manager() -> None:
    with SchedulerClusterCombo(n_workers=2, logging_level="WARNING") as combo:
        assert combo._manager is None and len(combo.worker_pids()) == 2
    with pytest.raises(ValueError, match="n_workers <= max_workers"):
        SchedulerClusterCombo(n_workers=3, max_workers=2)


@pytest.mark.timeout(60)
def test_an_elastic_combo_with_keys_but_no_manager_key_pair_says_so_before_starting(tmp_path) -> None:
    keys = tmp_path / "keys"
    make_keys(keys)
    for name in ("manager.key", "manager.key_secret"):  # a directory made before keygen made this pair
        (keys / name).unlink()
    with pytest.raises(ValueError, match="scaler_keygen DIR --add manager"):
        SchedulerClusterCombo(n_workers=1, max_workers=2, keys_dir=str(keys))
    add_key(keys, "manager")
    combo = SchedulerClusterCombo(n_workers=1, max_workers=2, keys_dir=str(keys), logging_level="WARNING")
    with combo, Client(address=combo.get_address(), keys_dir=str(keys), timeout_seconds=30) as client:
        assert client.submit(tasks.noop, 3).result(timeout=30) == 3


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_client_without_address_on_four_cpus_starts_two_workers_and_grows_to_four(monkeypatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    with Client(timeout_seconds=60) as client:
        combo = client._combo
        assert combo._manager is not None and len(combo._cluster.pids()) == 2
        futures = [client.submit(tasks.sleep_return, 1.0, i) for i in range(16)]
        deadline = time.monotonic() + 60
        while active_workers(client) < 4:
            assert time.monotonic() < deadline, "never grew to one worker per CPU"
            time.sleep(0.1)
        assert [future.result(timeout=60) for future in futures] == list(range(16))
        pids = combo.worker_pids()
        manager = combo._manager
    assert manager.poll() is not None
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
