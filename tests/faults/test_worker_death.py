"""A worker killed with SIGKILL: its socket closes, the scheduler notices at once and moves its tasks."""

from __future__ import annotations

import os
import signal
import time

import pytest

from scaler import Client, SchedulerClusterCombo
from tests.faults.support import signal_all, tree, wait_workers
from tests.integration import tasks
from tests.integration.conftest import descendants, wait_no_descendants


def test_a_sigkilled_worker_is_noticed_in_about_a_second_and_its_task_reruns() -> None:
    combo = SchedulerClusterCombo(n_workers=2, worker_timeout_seconds=60, logging_level="WARNING")
    with combo, Client(address=combo.get_address(), timeout_seconds=30) as client:
        assert client.map(tasks.noop, range(4)) == list(range(4))  # both workers are up
        first, second = (client.submit(tasks.pid_after, 3.0) for _ in range(2))
        time.sleep(0.5)  # both started, one on each worker
        victim = combo.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        first.result(timeout=30), second.result(timeout=30)
        elapsed = time.monotonic() - killed_at
        # Heartbeats alone would take worker_timeout_seconds (60 s) to notice; the closed socket
        # gets the task requeued at once, so both finish within about two task lengths.
        assert elapsed < 10, elapsed


@pytest.mark.timeout(60)
def test_work_routed_to_a_worker_just_killed_does_not_stall_the_scheduler() -> None:
    before = descendants()
    combo = SchedulerClusterCombo(n_workers=2, worker_timeout_seconds=60, logging_level="WARNING")
    with combo, Client(address=combo.get_address(), timeout_seconds=30) as client:
        wait_workers(client, combo.worker_pids())
        signal_all(tree(combo.worker_pids()[0]), signal.SIGKILL)
        killed_at = time.monotonic()
        # Sent at once: some of these go to the dead worker before the scheduler hears of its death.
        futures = [client.submit(tasks.noop, index) for index in range(2000)]
        with Client(address=combo.get_address(), timeout_seconds=30) as fresh:
            # A stall would last worker_timeout_seconds (60); 10 s leaves room for a loaded machine,
            # where this task waits behind the 2,000 no-ops.
            assert fresh.submit(round, 3.14).result(timeout=10) == 3
        answered_after = time.monotonic() - killed_at
        assert [future.result(timeout=30) for future in futures] == list(range(2000))
    print(f"\n[route to a dead worker] a fresh client got round(3.14) {answered_after:.2f} s after the kill")
    assert answered_after < 10.0
    assert wait_no_descendants(before) == set()
