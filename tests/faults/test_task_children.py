"""Programs a task starts end with it: on cancel, timeout, processor crash and every way a worker stops.

Each task here starts ``sleep 300`` and notes its pid in a file. Once its task is stopped, that
process must be gone (a zombie counts as gone) within a few seconds, whoever its parent is by then.
"""

from __future__ import annotations

import collections.abc
import contextlib
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from scaler import Client, SchedulerClusterCombo
from scaler.errors import TaskTimeoutError, WorkerDiedError
from scaler.io.sockets import free_tcp_address
from tests.faults import fault_tasks
from tests.faults.support import alive, wait_gone
from tests.faults.support import wait_workers as wait_for_workers

GONE_WITHIN = 3.0  # seconds: generous on a busy machine; a group kill takes milliseconds
SETTINGS = {"heartbeat_interval_seconds": 0.5, "logging_level": "WARNING"}


def spawned(path: str, count: int = 1, timeout: float = 30.0) -> list[int]:
    """Wait until tasks have noted ``count`` pids in ``path``; return them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError), open(path) as pids:
            found = [int(line) for line in pids.read().splitlines()]
            if len(found) >= count:
                return found
        time.sleep(0.02)
    raise AssertionError(f"the task never noted {count} child pids in {path}")


@pytest.fixture
def pid_file(tmp_path) -> collections.abc.Iterator[str]:
    """Where tasks note their children's pids; any ``sleep 300`` still running at the end is killed."""
    path = str(tmp_path / "pids")
    yield path
    if os.path.exists(path):
        with open(path) as pids:
            recorded = [int(line) for line in pids.read().splitlines()]
        for pid in alive(recorded):
            with contextlib.suppress(psutil.Error):
                process = psutil.Process(pid)
                if process.cmdline() == ["sleep", "300"]:  # never an unrelated process that reused the pid
                    process.kill()


@pytest.fixture(scope="module")
def combo() -> collections.abc.Iterator[SchedulerClusterCombo]:
    with SchedulerClusterCombo(n_workers=1, max_task_retries=0, **SETTINGS) as cluster:
        yield cluster


@pytest.fixture
def client(combo: SchedulerClusterCombo) -> collections.abc.Iterator[Client]:
    with Client(address=combo.get_address(), timeout_seconds=30) as connected:
        yield connected


@pytest.mark.timeout(60)
def test_cancel_ends_the_programs_the_task_started(client: Client, pid_file: str) -> None:
    future = client.submit(fault_tasks.spawn_sleep_and_wait, pid_file)
    pids = spawned(pid_file)
    assert future.cancel(timeout=10)
    cancelled_at = time.monotonic()
    assert wait_gone(pids, GONE_WITHIN) == set()
    print(f"\n[task children] the task's sleep was gone {time.monotonic() - cancelled_at:.3f} s after cancel()")


@pytest.mark.timeout(60)
def test_cancel_ends_a_child_that_left_the_group_while_it_is_still_a_child(client: Client, pid_file: str) -> None:
    future = client.submit(fault_tasks.spawn_sleep_and_wait, pid_file, new_session=True)
    pids = spawned(pid_file)
    assert future.cancel(timeout=10)
    assert wait_gone(pids, GONE_WITHIN) == set()


@pytest.mark.timeout(60)
def test_a_task_timeout_ends_the_programs_the_task_started(client: Client, pid_file: str) -> None:
    future = client.submit_verbose(fault_tasks.spawn_sleep_and_wait, (pid_file,), {}, timeout_seconds=1)
    pids = spawned(pid_file)
    assert isinstance(future.exception(timeout=30), TaskTimeoutError)
    assert wait_gone(pids, GONE_WITHIN) == set()


@pytest.mark.timeout(60)
def test_a_processor_crash_ends_the_programs_its_task_started(client: Client, pid_file: str) -> None:
    future = client.submit(fault_tasks.spawn_sleep_and_die, pid_file)
    assert isinstance(future.exception(timeout=30), WorkerDiedError)
    assert wait_gone(spawned(pid_file), GONE_WITHIN) == set()


@pytest.mark.timeout(60)
def test_combo_shutdown_while_a_task_runs_leaves_none_of_its_programs(pid_file: str) -> None:
    combo = SchedulerClusterCombo(n_workers=1, **SETTINGS)
    try:
        with Client(address=combo.get_address(), timeout_seconds=30) as client:
            client.submit(fault_tasks.spawn_sleep_and_wait, pid_file)
            pids = spawned(pid_file)
            combo.shutdown()
    finally:
        combo.shutdown()
    assert wait_gone(pids, GONE_WITHIN) == set()


@pytest.mark.timeout(60)
def test_a_sigkilled_agent_s_processors_end_their_tasks_programs(pid_file: str) -> None:
    combo = SchedulerClusterCombo(n_workers=1, **SETTINGS)
    with combo, Client(address=combo.get_address(), timeout_seconds=30) as client:
        wait_for_workers(client, combo.worker_pids())
        client.submit(fault_tasks.spawn_sleep_and_wait, pid_file)
        pids = spawned(pid_file)
        os.kill(combo.worker_pids()[0], signal.SIGKILL)
        killed_at = time.monotonic()
        assert wait_gone(pids, GONE_WITHIN) == set()
        gone_after = time.monotonic() - killed_at
        print(f"\n[task children] the task's sleep was gone {gone_after:.3f} s after a SIGKILL to its agent")


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_scaler_cluster_leaves_none_of_the_tasks_programs(pid_file: str, stop_signal: int) -> None:
    address = free_tcp_address()
    scheduler = subprocess.Popen([sys.executable, "-m", "scaler.cli.scheduler", address, "--logging-level=WARNING"])
    cluster_command = [sys.executable, "-m", "scaler.cli.cluster", "-n", "1", address, "--logging-level=WARNING"]
    cluster = subprocess.Popen([*cluster_command, "--grace-period-seconds=1"])
    try:
        with Client(address=address, timeout_seconds=30) as client:
            client.submit(fault_tasks.spawn_sleep_and_wait, pid_file)
            pids = spawned(pid_file)
            cluster.send_signal(stop_signal)
            assert cluster.wait(timeout=30) == 0
            assert wait_gone(pids, GONE_WITHIN) == set()
    finally:
        for process in (cluster, scheduler):
            if process.poll() is None:
                process.kill()
            process.wait()
