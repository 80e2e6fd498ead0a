"""Backpressure: past ``max_number_of_tasks_waiting`` queued tasks, ``submit`` blocks until there is room."""

from __future__ import annotations

import threading
import time

import psutil
import pytest

from scaler import Client, SchedulerClusterCombo
from scaler.errors import DisconnectedError, SerializationError
from tests.faults import fault_tasks
from tests.integration import tasks
from tests.integration.conftest import descendants, wait_no_descendants


def submit_counting(client: Client, n_tasks: int, seconds: float) -> tuple[int, list[int]]:
    """Submit ``n_tasks`` tasks without keeping their futures; return the most that were ever unfinished
    and each task's result, gathered by done-callbacks."""
    done = 0
    lock = threading.Lock()
    results: list[int] = []

    def finished(future) -> None:
        nonlocal done
        with lock:
            done += 1
            results.append(future.result())

    most_unfinished = 0
    for index in range(n_tasks):
        client.submit(fault_tasks.sleep_square, index, seconds).add_done_callback(finished)
        with lock:
            most_unfinished = max(most_unfinished, index + 1 - done)
    deadline = time.monotonic() + 120
    while done < n_tasks:
        assert time.monotonic() < deadline, f"only {done} of {n_tasks} tasks finished"
        time.sleep(0.01)
    return most_unfinished, results


@pytest.mark.timeout(90)
def test_submit_blocks_while_the_scheduler_queue_is_full() -> None:
    before = descendants()
    limit, per_worker, n_tasks = 50, 10, 1500
    with (
        SchedulerClusterCombo(
            n_workers=1, max_number_of_tasks_waiting=limit, per_worker_queue_size=per_worker, logging_level="WARNING"
        ) as combo,
        Client(address=combo.get_address(), timeout_seconds=30) as client,
    ):
        started = time.monotonic()
        most_unfinished, results = submit_counting(client, n_tasks, 0.001)
        elapsed = time.monotonic() - started
    print(
        f"\n[backpressure] max_number_of_tasks_waiting={limit}, per_worker_queue_size={per_worker}: "
        f"{n_tasks} tasks, at most {most_unfinished} unfinished at once, done in {elapsed:.2f} s"
    )
    assert sorted(results) == [index * index for index in range(n_tasks)]
    # Queued, on the worker, and what was on its way when the scheduler said "full".
    assert most_unfinished <= limit + per_worker + 200, most_unfinished
    assert wait_no_descendants(before) == set()


@pytest.mark.timeout(60)
def test_a_submit_waiting_for_room_fails_when_the_client_disconnects() -> None:
    before = descendants()
    with SchedulerClusterCombo(
        n_workers=1, max_number_of_tasks_waiting=5, per_worker_queue_size=1, logging_level="WARNING"
    ) as combo:
        client = Client(address=combo.get_address(), timeout_seconds=30)
        outcome: list[BaseException | None] = []

        def flood() -> None:
            try:
                for _ in range(100):
                    client.submit(fault_tasks.sleep_square, 0, 5.0)
                outcome.append(None)
            except BaseException as error:  # noqa: BLE001 - the test inspects it
                outcome.append(error)

        thread = threading.Thread(target=flood)
        thread.start()
        time.sleep(1.0)
        assert thread.is_alive(), "submit should block: the queue is full"
        client.disconnect()
        thread.join(timeout=10)
        assert not thread.is_alive()
        assert len(outcome) == 1 and isinstance(outcome[0], DisconnectedError), outcome
    assert wait_no_descendants(before) == set()


@pytest.mark.timeout(60)
def test_submits_that_fail_before_sending_use_no_credit() -> None:
    before = descendants()
    combo = SchedulerClusterCombo(n_workers=1, max_number_of_tasks_waiting=2, logging_level="WARNING")
    with combo, Client(address=combo.get_address(), timeout_seconds=30) as client:
        for _ in range(5):  # more failures than credits: had each used one, the next submit would hang
            with pytest.raises(SerializationError):
                client.submit(round, threading.Lock())
        assert client.submit(round, 2.5).result(timeout=10) == 2
        assert client.map(round, [0.5, 1.5, 2.5, 3.5]) == [0, 2, 2, 4]
    assert wait_no_descendants(before) == set()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_million_no_op_tasks_on_one_worker_keep_memory_bounded() -> None:
    before = descendants()
    n_tasks = 1_000_000
    with SchedulerClusterCombo(n_workers=1, max_number_of_tasks_waiting=10_000, logging_level="WARNING") as combo:
        scheduler = psutil.Process(combo.scheduler_pid())
        me = psutil.Process()
        with Client(address=combo.get_address(), timeout_seconds=60) as client:
            rss = {"scheduler": [scheduler.memory_info().rss], "client": [me.memory_info().rss]}
            done = 0

            def finished(_future) -> None:
                nonlocal done
                done += 1

            started = time.monotonic()
            for index in range(n_tasks):
                client.submit(tasks.noop, index).add_done_callback(finished)
                if index % 100_000 == 0:
                    rss["scheduler"].append(scheduler.memory_info().rss)
                    rss["client"].append(me.memory_info().rss)
            while done < n_tasks:
                time.sleep(0.05)
            elapsed = time.monotonic() - started
            rss["scheduler"].append(scheduler.memory_info().rss)
            rss["client"].append(me.memory_info().rss)
    mib = {name: [value / 2**20 for value in values] for name, values in rss.items()}
    growth = {name: max(values) - values[1] for name, values in mib.items()}  # from after the first 1 task
    print(
        f"\n[1M tasks] {n_tasks} no-op tasks on 1 worker in {elapsed:.0f} s ({n_tasks / elapsed:.0f}/s); "
        f"peak RSS: scheduler {max(mib['scheduler']):.0f} MiB (grew {growth['scheduler']:.0f}), "
        f"client {max(mib['client']):.0f} MiB (grew {growth['client']:.0f})"
    )
    assert growth["scheduler"] < 200, mib["scheduler"]
    assert growth["client"] < 200, mib["client"]
    assert wait_no_descendants(before) == set()
