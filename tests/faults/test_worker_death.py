"""A worker killed with SIGKILL: its socket closes, the scheduler notices at once and moves its tasks."""

from __future__ import annotations

import os
import signal
import time

from scaler import Client, SchedulerClusterCombo
from tests.integration import tasks


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
