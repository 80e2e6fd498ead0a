"""Where tasks run: capabilities, priorities, and moving queued work to idle workers."""

from __future__ import annotations

import time

import pytest

from scaler import Client, Cluster, NoWorkerError, SchedulerClusterCombo, TaskRejectedError
from tests.integration import tasks


def test_a_task_runs_only_on_a_worker_with_its_capabilities() -> None:
    combo = SchedulerClusterCombo(n_workers=1, logging_level="WARNING", unschedulable_grace_seconds=2)
    with combo, Client(address=combo.get_address(), timeout_seconds=30) as client:
        plain_pid = client.submit(tasks.pid_after, 0).result(timeout=30)
        gpu = client.submit_verbose(tasks.pid_after, (0,), {}, capabilities={"gpu": 1})
        time.sleep(0.5)
        assert not gpu.done()  # no worker can run it yet
        with Cluster(combo.get_address(), 1, per_worker_capabilities={"gpu": 1}, logging_level="WARNING"):
            assert gpu.result(timeout=30) != plain_pid


def test_a_task_no_worker_can_ever_run_fails_clearly_after_the_grace_period() -> None:
    combo = SchedulerClusterCombo(n_workers=1, logging_level="WARNING", unschedulable_grace_seconds=1)
    with combo, Client(address=combo.get_address(), timeout_seconds=30) as client:
        future = client.submit_verbose(tasks.noop, (1,), {}, capabilities={"fpga": 1})
        with pytest.raises(TaskRejectedError, match="--per-worker-capabilities fpga=1"):
            future.result(timeout=20)
        assert isinstance(future.exception(), NoWorkerError)  # Scaler's name for it
        assert client.submit(tasks.noop, 2).result(timeout=10) == 2


def test_higher_priority_queued_tasks_run_first(tmp_path: object) -> None:
    combo = SchedulerClusterCombo(n_workers=1, logging_level="WARNING", per_worker_queue_size=1)
    with combo, Client(address=combo.get_address(), timeout_seconds=30) as client:
        ledger = str(tmp_path) + "/order.txt"  # type: ignore[operator]
        blocker = client.submit(tasks.sleep_return, 1.0)
        time.sleep(0.3)
        futures = [
            client.submit_verbose(tasks.append_line, (ledger, name), {}, priority=priority)
            for name, priority in [("low", 0), ("high", 10), ("mid", 5)]
        ]
        blocker.result(timeout=30)
        for future in futures:
            future.result(timeout=30)
        with open(ledger) as file:
            assert file.read().split() == ["high", "mid", "low"]


@pytest.mark.slow
def test_queued_tasks_move_to_workers_that_join_later() -> None:
    combo = SchedulerClusterCombo(n_workers=1, logging_level="WARNING")
    with combo, Client(address=combo.get_address(), timeout_seconds=60) as client:
        client.submit(tasks.noop, 0).result(timeout=30)  # the first worker is up
        futures = [client.submit(tasks.pid_after, 4.0) for _ in range(8)]
        time.sleep(0.3)  # all 8 now sit on the one worker
        start = time.monotonic()
        with Cluster(combo.get_address(), 7, logging_level="WARNING"):
            pids = [future.result(timeout=60) for future in futures]
            elapsed = time.monotonic() - start
    print(f"8 x 4 s tasks moved to 8 workers: {elapsed:.2f} s, {len(set(pids))} processes")
    # The work spread to the workers that joined. A worker still booting when the first one ends
    # its task (7 agents start on 2 cores) lets that one run its next queued task itself: at
    # most one such pair is allowed. Without stealing, all 8 would share one process.
    assert len(set(pids)) >= 7, pids
    # Sequentially this would take 32 s; spread out it takes one or two tasks plus the workers' start-up.
    assert elapsed < 20, elapsed
