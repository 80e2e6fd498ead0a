"""Backpressure: past ``max_number_of_tasks_waiting`` queued tasks, ``submit`` blocks until there is room."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable

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


def rss_when_idle(done: Callable[[], int], count: int, processes: dict[str, psutil.Process]) -> dict[str, int]:
    """Each process's resident memory once ``count`` tasks have ended and nothing is in flight."""
    deadline = time.monotonic() + 120
    while done() < count:
        assert time.monotonic() < deadline, f"only {done()} of {count} tasks finished"
        time.sleep(0.01)
    time.sleep(0.2)  # the scheduler and the client's agent thread finish their bookkeeping of the last results
    gc.collect()
    return {name: process.memory_info().rss for name, process in processes.items()}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_no_op_tasks_streamed_through_one_worker_keep_memory_bounded() -> None:
    """Memory does not grow with the number of tasks run: 300,000 no-op tasks through one worker, at most
    10,000 of them queued at a time.

    The bounds are those of this test's former run of 1,000,000 tasks: RSS may grow less than 200 MiB,
    warm-up included, which is at most 200 MiB per million tasks for a leak. The peak is held to the 200 MiB.
    A leak is measured where in-flight work cannot hide it or pass for it: with nothing in flight, after the
    first 20,000 tasks and after the last (there the growth measured 1 to 17 MiB; read while 10,000 tasks may
    be in flight, up to 47 MiB). Between the two it may grow only by the part of the million-task budget the
    warm-up left, pro rata (about 52 MiB), so a leak of as many bytes per task as the million-task run caught
    fails here too. ``benchmarks/bench_memory.py stream`` runs 1,000,000 tasks.
    """
    before = descendants()
    n_tasks, warm, every = 300_000, 20_000, 10_000
    budget, budget_tasks = 200 * 2**20, 1_000_000
    with SchedulerClusterCombo(n_workers=1, max_number_of_tasks_waiting=10_000, logging_level="WARNING") as combo:
        processes = {"scheduler": psutil.Process(combo.scheduler_pid()), "client": psutil.Process()}
        with Client(address=combo.get_address(), timeout_seconds=60) as client:
            rss = {name: [process.memory_info().rss] for name, process in processes.items()}
            done = 0

            def finished(_future) -> None:
                nonlocal done
                done += 1

            started = time.monotonic()
            for index in range(n_tasks):
                client.submit(tasks.noop, index).add_done_callback(finished)
                if index % every == 0:
                    for name, process in processes.items():
                        rss[name].append(process.memory_info().rss)
                if index + 1 == warm:
                    warmed = rss_when_idle(lambda: done, warm, processes)
            ended = rss_when_idle(lambda: done, n_tasks, processes)
            elapsed = time.monotonic() - started
            for name in processes:
                rss[name].append(ended[name])
    # rss[name][1] is after the first task.
    growth = {name: max(values) - values[1] for name, values in rss.items()}
    leaked = {name: ended[name] - warmed[name] for name in rss}
    allowed = {name: (budget - (warmed[name] - rss[name][1])) * (n_tasks - warm) / budget_tasks for name in rss}
    mib = {name: [value / 2**20 for value in values] for name, values in rss.items()}
    print(
        f"\n[{n_tasks} tasks] no-op tasks on 1 worker in {elapsed:.0f} s ({n_tasks / elapsed:.0f}/s); peak RSS: "
        + "; ".join(
            f"{name} {max(mib[name]):.0f} MiB (grew {growth[name] / 2**20:.0f}; idle after task {warm} and after "
            f"the last: {leaked[name] / 2**20:+.1f} MiB, {allowed[name] / 2**20:.1f} allowed)"
            for name in rss
        )
    )
    for name in rss:
        assert growth[name] < budget, (name, mib[name])
        assert leaked[name] < allowed[name], (name, warmed[name], ended[name], mib[name])
    assert wait_no_descendants(before) == set()
