"""Cancelling many futures while a worker dies: a confirmed cancel is final, the rest complete."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from scaler import Client, SchedulerClusterCombo
from tests.faults import fault_tasks
from tests.faults.support import by_index, read_ledger, tree, wait_gone
from tests.faults.support import wait_workers as wait_for_workers
from tests.integration.conftest import descendants, wait_no_descendants

EPSILON = 0.05  # seconds: clocks of two processes on one machine, and the time to write a line


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_cancelling_half_of_the_futures_while_a_worker_dies(tmp_path) -> None:
    n_tasks, seconds = 1000, 0.02
    before = descendants()
    ledger = str(tmp_path / "ledger")
    combo = SchedulerClusterCombo(
        n_workers=2, heartbeat_interval_seconds=0.5, worker_timeout_seconds=3, logging_level="WARNING"
    )
    touched: set[int] = set()
    try:
        with Client(address=combo.get_address(), timeout_seconds=30, heartbeat_interval_seconds=0.5) as client:
            wait_for_workers(client, combo.worker_pids())
            victim = combo.worker_pids()[0]
            touched |= set(tree(victim))
            futures = [client.submit(fault_tasks.ledger_start, ledger, i, seconds) for i in range(n_tasks)]
            time.sleep(0.5)
            to_cancel = list(range(1, n_tasks, 2))
            # The agent is killed from another thread a third of the way through, while cancels go on.
            killer = threading.Thread(target=os.kill, args=(victim, signal.SIGKILL))
            confirmed: dict[int, float] = {}  # index -> time.time() when cancel() returned True
            refused: list[int] = []
            started = time.monotonic()
            for n, index in enumerate(to_cancel):
                if n == len(to_cancel) // 3:
                    killer.start()
                if futures[index].cancel(timeout=10):
                    confirmed[index] = time.time()
                else:
                    refused.append(index)
            cancel_seconds = time.monotonic() - started
            killer.join()
            outcomes = {}
            for index, future in enumerate(futures):
                if index not in confirmed:
                    outcomes[index] = future.result(timeout=60)
            assert client.statistics()["pending"] == 0
    finally:
        combo.shutdown()
    starts = by_index(read_ledger(ledger), "start")
    late = {
        index: max(entry.time for entry in starts[index]) - at
        for index, at in confirmed.items()
        if index in starts and max(entry.time for entry in starts[index]) > at + EPSILON
    }
    ran_before = sum(index in starts for index in confirmed)
    print(
        f"\n[cancel while a worker dies] {len(confirmed)} of {len(to_cancel)} cancels confirmed "
        f"in {cancel_seconds:.2f} s ({len(refused)} refused: already done); {ran_before} of them had started "
        f"before their confirmation, {len(late)} after it; {len(outcomes)} other futures right; lost futures 0"
    )
    assert all(futures[index].cancelled() for index in confirmed)
    assert all(futures[index].done() and not futures[index].cancelled() for index in refused)
    assert outcomes == {index: index * index for index in range(n_tasks) if index not in confirmed}
    assert late == {}, f"cancelled tasks that started after their cancel was confirmed (index: seconds late): {late}"
    assert len(confirmed) >= len(to_cancel) // 2
    assert wait_gone(touched) == set()
    assert wait_no_descendants(before) == set()
