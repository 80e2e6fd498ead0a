"""The scheduler or a client SIGKILLed: the survivors find out within their timeouts and move on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from scaler import Client, DisconnectedError, SchedulerClusterCombo
from tests.faults import fault_tasks
from tests.faults.support import read_ledger, tree, wait_gone
from tests.faults.support import wait_workers as wait_for_workers
from tests.integration.conftest import descendants, wait_no_descendants

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(60)
def test_a_sigkilled_scheduler_fails_every_pending_future_and_its_workers_exit_by_themselves() -> None:
    client_timeout, death_timeout = 3.0, 3.0
    before = descendants()
    combo = SchedulerClusterCombo(
        n_workers=2,
        heartbeat_interval_seconds=0.5,
        worker_timeout_seconds=3,
        death_timeout_seconds=death_timeout,
        logging_level="WARNING",
    )
    touched: set[int] = set()
    try:
        client = Client(address=combo.get_address(), timeout_seconds=client_timeout, heartbeat_interval_seconds=0.5)
        try:
            wait_for_workers(client, combo.worker_pids())
            for agent in combo.worker_pids():
                touched |= set(tree(agent))
            futures = [client.submit(fault_tasks.sleep_square, i, 0.2) for i in range(100)]
            settled_at: dict[int, float] = {}
            for index, future in enumerate(futures):
                future.add_done_callback(lambda _, index=index: settled_at.setdefault(index, time.monotonic()))
            while sum(future.done() for future in futures) < 4:
                time.sleep(0.01)
            os.kill(combo.scheduler_pid(), signal.SIGKILL)
            killed_at = time.monotonic()
            outcomes = {}
            for index, future in enumerate(futures):
                error = future.exception(timeout=client_timeout + 5)
                outcomes[index] = error if error is not None else future.result(timeout=0)
            failed = {index for index, outcome in outcomes.items() if isinstance(outcome, DisconnectedError)}
            succeeded = {index for index, outcome in outcomes.items() if outcome == index * index}
            assert failed | succeeded == set(range(100)), (
                "every future either failed with DisconnectedError or is right"
            )
            last_failure = max(settled_at[index] for index in failed) - killed_at
        finally:
            client.disconnect()
        gone = wait_gone(touched, timeout=15)
        workers_gone_after = time.monotonic() - killed_at
    finally:
        combo.shutdown()
    print(
        f"\n[scheduler SIGKILL] {len(failed)} pending futures failed with DisconnectedError, the last "
        f"{last_failure:.2f} s after the kill (client timeout_seconds={client_timeout:g}); {len(succeeded)} had "
        f"finished; the workers and their processors were gone {workers_gone_after:.2f} s after the kill "
        f"(death_timeout_seconds={death_timeout:g}); lost futures 0"
    )
    assert gone == set()
    assert len(failed) >= 50
    assert last_failure <= client_timeout + 1.0, last_failure
    assert workers_gone_after <= 10.0, workers_gone_after
    assert wait_no_descendants(before) == set()


@pytest.mark.timeout(60)
def test_a_sigkilled_client_s_queued_tasks_are_dropped_and_the_workers_serve_others(tmp_path) -> None:
    n_queued, seconds, n_workers, client_timeout = 1000, 0.2, 2, 3.0
    before = descendants()
    ledger = str(tmp_path / "ledger")
    combo = SchedulerClusterCombo(
        n_workers=n_workers,
        heartbeat_interval_seconds=0.5,
        worker_timeout_seconds=3,
        client_timeout_seconds=client_timeout,
        logging_level="WARNING",
    )
    code = textwrap.dedent(
        f"""
        import time
        import cloudpickle
        from scaler import Client
        from tests.faults import fault_tasks
        cloudpickle.register_pickle_by_value(fault_tasks)
        client = Client({combo.get_address()!r}, timeout_seconds=30, heartbeat_interval_seconds=0.5)
        futures = [client.submit(fault_tasks.ledger_start, {ledger!r}, i, {seconds}) for i in range({n_queued})]
        futures[0].result(timeout=30)
        print("ready", flush=True)
        time.sleep(600)
        """
    )
    try:
        with subprocess.Popen(
            [sys.executable, "-c", code], cwd=REPOSITORY, stdout=subprocess.PIPE, text=True
        ) as doomed:
            try:
                assert doomed.stdout is not None
                assert doomed.stdout.readline().strip() == "ready"
            finally:
                doomed.kill()
        killed_at = time.monotonic()
        with Client(address=combo.get_address(), timeout_seconds=30, heartbeat_interval_seconds=0.5) as client:
            futures = [client.submit(fault_tasks.sleep_square, i, 0.01) for i in range(100)]
            assert [future.result(timeout=30) for future in futures] == [i * i for i in range(100)]
            served_after = time.monotonic() - killed_at
            ran = len(read_ledger(ledger))
            time.sleep(1.0)
            ran_later = len(read_ledger(ledger))
        touched = {pid for agent in combo.worker_pids() for pid in tree(agent)}
    finally:
        combo.shutdown()
    alone = n_queued * seconds / n_workers
    print(
        f"\n[client SIGKILL] client_timeout_seconds={client_timeout:g}: another client's 100 tasks finished "
        f"{served_after:.2f} s after the kill (the {n_queued} queued tasks alone would take {alone:.0f} s); "
        f"{ran} of them had started, none after; lost futures 0"
    )
    assert served_after < client_timeout + 5.0, served_after
    assert ran_later == ran, "tasks of the dead client still start"
    assert ran < n_queued / 4
    assert wait_gone(touched) == set()
    assert wait_no_descendants(before) == set()
