"""SIGTERM to a worker: it hands back its queued tasks, finishes the running one, and exits.

Nothing is lost and nothing runs twice; only a task still running when the grace period ends
runs again, elsewhere, and that does not count against its retry budget.
"""

from __future__ import annotations

import signal
import time

import psutil
import pytest

from scaler import Client, Cluster, SchedulerClusterCombo
from tests.faults import fault_tasks
from tests.faults.support import LedgerTail, agent_of, by_index, read_ledger, tree, wait_gone
from tests.faults.support import wait_workers as wait_for_workers
from tests.integration.conftest import descendants, wait_no_descendants

FAULT_SETTINGS = {"heartbeat_interval_seconds": 0.5, "worker_timeout_seconds": 3, "logging_level": "WARNING"}


def wait_until_running_on(tail: LedgerTail, agent_pid: int, agents: list[int], timeout: float = 30.0) -> int:
    """Wait until a task starts on ``agent_pid``'s processor; return its index."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for entry in tail.new_entries():
            if entry.kind == "start" and agent_of(entry.pid, agents) == agent_pid:
                return entry.index
        time.sleep(0.01)
    raise AssertionError(f"no task started on worker {agent_pid}")


@pytest.mark.timeout(90)
def test_sigterm_hands_back_queued_tasks_finishes_the_running_one_and_runs_nothing_twice(tmp_path) -> None:
    n_tasks, seconds = 20, 0.3
    before = descendants()
    ledger = str(tmp_path / "ledger")
    combo = SchedulerClusterCombo(n_workers=1, max_task_retries=0, **FAULT_SETTINGS)
    leaving = Cluster(combo.get_address(), 1, heartbeat_interval_seconds=0.5, logging_level="WARNING")
    try:
        leaving.start()
        victim = leaving.pids()[0]
        agents = combo.worker_pids() + [victim]
        with Client(address=combo.get_address(), timeout_seconds=30, heartbeat_interval_seconds=0.5) as client:
            wait_for_workers(client, agents)
            tail = LedgerTail(ledger)
            futures = [client.submit(fault_tasks.ledger_sleep, ledger, i, seconds) for i in range(n_tasks)]
            running = wait_until_running_on(tail, victim, agents)
            pids = tree(victim)
            psutil.Process(victim).send_signal(signal.SIGTERM)
            signalled_at, signalled_wall = time.monotonic(), time.time()
            process = leaving._processes[0]
            exit_code = process.wait(timeout=20)
            exited_after = time.monotonic() - signalled_at
            assert [future.result(timeout=60) for future in futures] == [i * i for i in range(n_tasks)]
            assert client.statistics()["pending"] == 0
    finally:
        leaving.shutdown(grace_seconds=5)
        combo.shutdown()
    entries = read_ledger(ledger)
    starts, dones = by_index(entries, "start"), by_index(entries, "done")
    twice = {index: len(runs) for index, runs in starts.items() if len(runs) != 1}
    on_victim = sorted(index for index, runs in dones.items() if runs[0].pid in pids)
    running_done = dones[running][0]
    print(
        f"\n[graceful stop] SIGTERM while it ran task {running}: the worker exited {exited_after:.2f} s later "
        f"(code {exit_code}), after finishing that task; it ran {len(on_victim)} tasks in all; the other "
        f"{n_tasks - len(on_victim)} ran on the other worker; tasks started twice {len(twice)}; lost futures 0"
    )
    assert exit_code == 0
    assert twice == {}, f"tasks that ran more than once: {twice}"
    assert running_done.pid in pids and running_done.time > signalled_wall, "the running task finished there"
    assert exited_after < seconds + 3, "it should exit as soon as its running task ends"
    assert running in on_victim and len(on_victim) < n_tasks // 2, "its queued tasks were not handed back"
    assert wait_gone(pids) == set()
    assert wait_no_descendants(before) == set()


@pytest.mark.timeout(90)
def test_a_task_still_running_when_the_grace_period_ends_runs_again_elsewhere_without_using_a_retry(
    tmp_path,
) -> None:
    before = descendants()
    ledger = str(tmp_path / "ledger")
    combo = SchedulerClusterCombo(n_workers=1, max_task_retries=0, **FAULT_SETTINGS)
    leaving = Cluster(
        combo.get_address(), 1, heartbeat_interval_seconds=0.5, logging_level="WARNING", grace_period_seconds=1.0
    )
    try:
        leaving.start()
        victim = leaving.pids()[0]
        agents = combo.worker_pids() + [victim]
        with Client(address=combo.get_address(), timeout_seconds=30, heartbeat_interval_seconds=0.5) as client:
            wait_for_workers(client, agents)
            tail = LedgerTail(ledger)
            futures = [client.submit(fault_tasks.ledger_sleep, ledger, i, 4.0) for i in range(2)]
            running = wait_until_running_on(tail, victim, agents)
            pids = tree(victim)
            psutil.Process(victim).send_signal(signal.SIGTERM)
            signalled_at = time.monotonic()
            exit_code = leaving._processes[0].wait(timeout=20)
            exited_after = time.monotonic() - signalled_at
            # max_task_retries=0: had the cut-short attempt counted as a death, this would fail.
            assert [future.result(timeout=60) for future in futures] == [0, 1]
    finally:
        leaving.shutdown(grace_seconds=5)
        combo.shutdown()
    starts, dones = by_index(read_ledger(ledger), "start"), by_index(read_ledger(ledger), "done")
    print(
        f"\n[grace period over] grace_period_seconds=1: the worker exited {exited_after:.2f} s after SIGTERM "
        f"(code {exit_code}); its task ran again elsewhere and succeeded; lost futures 0"
    )
    assert exit_code == 0
    assert 0.9 < exited_after < 3.0
    assert len(starts[running]) == 2 and len(dones[running]) == 1
    assert starts[running][0].pid in pids and dones[running][0].pid not in pids
    assert wait_gone(pids) == set()
    assert wait_no_descendants(before) == set()
