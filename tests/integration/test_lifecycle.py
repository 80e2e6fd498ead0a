"""Starting and stopping clusters: the embedded default, shutdown, lost schedulers, no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from scaler import Client, DisconnectedError, SchedulerClusterCombo
from scaler.io.sockets import free_tcp_address
from tests.integration import tasks
from tests.integration.conftest import descendants, wait_no_descendants


def test_client_without_address_owns_a_private_cluster_and_leaves_nothing() -> None:
    before = descendants()
    with Client() as client:
        assert client.submit(sum, range(10)).result(timeout=30) == 45
        assert len(descendants() - before) >= 2
    assert wait_no_descendants(before) == set()


def test_combo_shutdown_leaves_no_process() -> None:
    before = descendants()
    combo = SchedulerClusterCombo(n_workers=2, logging_level="WARNING")
    with Client(address=combo.get_address(), timeout_seconds=10) as client:
        assert client.submit(tasks.noop, 1).result(timeout=30) == 1
    combo.shutdown()
    combo.shutdown()  # idempotent
    assert wait_no_descendants(before) == set()


def test_unprotected_scheduler_accepts_shutdown() -> None:
    before = descendants()
    combo = SchedulerClusterCombo(n_workers=1, protected=False, logging_level="WARNING")
    client = Client(address=combo.get_address(), timeout_seconds=10)
    assert client.submit(tasks.noop, 1).result(timeout=30) == 1
    client.shutdown()
    deadline = time.monotonic() + 10
    while combo._scheduler.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert combo._scheduler.poll() is not None, "the scheduler should have exited"
    combo.shutdown()
    assert wait_no_descendants(before) == set()


def test_pending_futures_fail_with_disconnected_error_when_the_scheduler_dies() -> None:
    combo = SchedulerClusterCombo(n_workers=1, logging_level="WARNING")
    try:
        client = Client(address=combo.get_address(), timeout_seconds=2, heartbeat_interval_seconds=0.5)
        future = client.submit(tasks.sleep_return, 60)
        time.sleep(0.3)
        os.kill(combo.scheduler_pid(), signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(DisconnectedError):
            future.result(timeout=15)
        assert time.monotonic() - start < 2 + 2  # timeout_seconds plus slack
        with pytest.raises(DisconnectedError):
            client.submit(tasks.noop, 1)
        client.disconnect()
    finally:
        combo.shutdown()


def test_client_to_nothing_fails_with_advice() -> None:
    with pytest.raises(DisconnectedError, match="scaler_scheduler"):
        Client(address="tcp://127.0.0.1:1", timeout_seconds=0.5)


def test_bad_address_is_refused_with_advice() -> None:
    with pytest.raises(ValueError, match="tcp://"):
        Client(address="localhost:8516")


def test_a_killed_worker_agent_leaves_no_processor_behind() -> None:
    combo = SchedulerClusterCombo(n_workers=1, logging_level="WARNING")
    with combo, Client(address=combo.get_address(), timeout_seconds=10) as client:
        future = client.submit(tasks.sleep_return, 60)
        time.sleep(0.5)
        agent = psutil.Process(combo.worker_pids()[0])
        helpers = agent.children(recursive=True)
        assert helpers, "the agent should have a processor"
        agent.kill()
        gone, alive = psutil.wait_procs(helpers, timeout=5)
        assert alive == []
        future.cancel(timeout=0)


def test_a_stopped_scheduler_tells_its_clients_at_once() -> None:
    combo = SchedulerClusterCombo(n_workers=1, logging_level="WARNING")
    try:
        client = Client(address=combo.get_address(), timeout_seconds=30)
        future = client.submit(tasks.sleep_return, 60)
        time.sleep(0.3)
        os.kill(combo.scheduler_pid(), signal.SIGTERM)
        start = time.monotonic()
        with pytest.raises(DisconnectedError, match="shut down"):
            future.result(timeout=10)
        assert time.monotonic() - start < 5  # far sooner than timeout_seconds=30
        client.disconnect()
    finally:
        combo.shutdown()


def test_a_restarted_scheduler_fails_the_futures_it_forgot() -> None:
    address = free_tcp_address()
    command = [sys.executable, "-m", "scaler.cli.scheduler", address, "--logging-level=WARNING"]
    scheduler = subprocess.Popen(command)
    try:
        client = Client(address=address, timeout_seconds=30, heartbeat_interval_seconds=0.2)
        future = client.submit(tasks.noop, 1)  # no worker: it waits in the scheduler's queue
        scheduler.kill()
        scheduler.wait()
        scheduler = subprocess.Popen(command)
        with pytest.raises(DisconnectedError, match="restarted"):
            future.result(timeout=10)
        client.disconnect()
    finally:
        scheduler.kill()
        scheduler.wait()


def test_disconnect_stops_the_running_task_so_the_only_worker_is_free_again() -> None:
    combo = SchedulerClusterCombo(n_workers=1, logging_level="WARNING")
    with combo:
        client = Client(address=combo.get_address(), timeout_seconds=10)
        client.submit(tasks.sleep_return, 60)
        time.sleep(0.5)
        client.disconnect()
        with Client(address=combo.get_address(), timeout_seconds=10) as fresh:
            assert fresh.submit(tasks.noop, 7).result(timeout=10) == 7
