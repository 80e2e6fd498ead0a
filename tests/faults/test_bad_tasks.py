"""Tasks that kill their processor, hang, or return what cannot travel: they fail alone, workers live on."""

from __future__ import annotations

import re
import time

import pytest

from scaler import (
    Client,
    ProcessorDiedError,
    SchedulerClusterCombo,
    SerializationError,
    TaskTimeoutError,
    WorkerDiedError,
)
from tests.faults import fault_tasks
from tests.faults.support import agent_of, processors_of, read_ledger, tree, wait_gone
from tests.faults.support import wait_workers as wait_for_workers
from tests.integration.conftest import descendants, wait_no_descendants

FAULT_SETTINGS = {"heartbeat_interval_seconds": 0.5, "worker_timeout_seconds": 3, "logging_level": "WARNING"}


@pytest.mark.timeout(60)
def test_a_poison_task_fails_with_processor_died_after_four_attempts_and_the_others_succeed(tmp_path) -> None:
    """The poison is first queued behind a long task, so work stealing moves it before its first run,
    as happens to any task on a busy cluster; the message must still count the runs (4)."""
    before = descendants()
    touched: set[int] = set()
    ledger = str(tmp_path / "poison.ledger")
    durations = [3.0, 0.5] + [0.01] * 98  # the 100 normal tasks
    with SchedulerClusterCombo(n_workers=2, **FAULT_SETTINGS) as combo:
        for agent in combo.worker_pids():
            touched |= set(tree(agent))
        with Client(address=combo.get_address(), timeout_seconds=30, heartbeat_interval_seconds=0.5) as client:
            wait_for_workers(client, combo.worker_pids())
            started = time.monotonic()
            futures = [client.submit(fault_tasks.sleep_square, i, durations[i]) for i in range(2)]
            time.sleep(0.1)  # one long task on each worker: the poison joins the first worker's queue
            poison = client.submit(fault_tasks.die_noting, ledger)
            futures += [client.submit(fault_tasks.sleep_square, i, durations[i]) for i in range(2, 100)]
            with pytest.raises(ProcessorDiedError) as raised:
                poison.result(timeout=30)
            failed_after = time.monotonic() - started
            assert [future.result(timeout=30) for future in futures] == [i * i for i in range(100)]
            assert isinstance(raised.value, WorkerDiedError)
            message = str(raised.value)
            runs = len(read_ledger(ledger))
            # Both workers still serve: each crash cost a processor, never an agent.
            wait_for_workers(client, combo.worker_pids())
            for agent in combo.worker_pids():
                touched |= set(tree(agent))
    found = re.search(r"died (\d+) times|(\d+) attempts", message)  # how many runs it names, in either wording
    counted = int(found.group(1) or found.group(2)) if found else None
    print(
        f"\n[poison task] ran {runs} times, failed with ProcessorDiedError after {failed_after:.2f} s; "
        f"its message counts {counted}: {message!r}; "
        f"100 other tasks right, lost futures 0"
    )
    assert wait_gone(touched) == set()
    assert wait_no_descendants(before) == set()
    assert runs == 4, runs  # max_task_retries=3: the first run and 3 retries
    assert counted == runs, f"the message does not say it was attempted {runs} times: {message}"


@pytest.mark.timeout(60)
def test_a_hung_task_times_out_and_the_worker_serves_the_next_task() -> None:
    before = descendants()
    limit = 2.0
    with SchedulerClusterCombo(n_workers=1, task_timeout_seconds=limit, **FAULT_SETTINGS) as combo:
        agent = combo.worker_pids()[0]
        with Client(address=combo.get_address(), timeout_seconds=30, heartbeat_interval_seconds=0.5) as client:
            assert client.submit(fault_tasks.sleep_square, 3, 0).result(timeout=30) == 9
            started = time.monotonic()
            hung = client.submit(fault_tasks.sleep_square, 4, 60)
            time.sleep(0.5)
            hung_processors = processors_of(agent)
            with pytest.raises(TaskTimeoutError, match="timeout"):
                hung.result(timeout=limit + 10)
            timed_out_after = time.monotonic() - started
            after = client.submit(fault_tasks.processor_pid)
            serving = after.result(timeout=10)
            served_after = time.monotonic() - started
            assert agent_of(serving, [agent]) == agent
            assert serving not in hung_processors, "the hung task's processor was replaced"
            assert wait_gone(hung_processors - {serving}) == set(), "the hung processor was killed"
            touched = set(tree(agent))
    print(
        f"\n[hung task] task_timeout_seconds={limit:g}: TaskTimeoutError after {timed_out_after:.2f} s; "
        f"the same worker ran the next task by {served_after:.2f} s; lost futures 0"
    )
    assert timed_out_after < limit + 2.0
    assert wait_gone(touched) == set()
    assert wait_no_descendants(before) == set()


@pytest.mark.timeout(60)
def test_a_per_task_timeout_from_submit_verbose_overrides_the_worker_s() -> None:
    limit = 1.0
    combo = SchedulerClusterCombo(n_workers=1, task_timeout_seconds=30, **FAULT_SETTINGS)
    with combo, Client(address=combo.get_address(), timeout_seconds=30, heartbeat_interval_seconds=0.5) as client:
        for bad in (0, -1.0, "2"):
            with pytest.raises(ValueError, match="timeout_seconds must be a number of seconds above 0"):
                client.submit_verbose(fault_tasks.sleep_square, (1, 0), {}, timeout_seconds=bad)  # type: ignore[arg-type]
        started = time.monotonic()
        hung = client.submit_verbose(fault_tasks.sleep_square, (4, 60), {}, timeout_seconds=limit)
        patient = client.submit_verbose(fault_tasks.sleep_square, (5, 1.5), {}, timeout_seconds=10)
        with pytest.raises(TaskTimeoutError):
            hung.result(timeout=20)
        timed_out_after = time.monotonic() - started
        assert patient.result(timeout=20) == 25  # longer than the first task's limit, within its own
    print(
        f"\n[per-task timeout] submit_verbose(timeout_seconds={limit:g}): "
        f"TaskTimeoutError after {timed_out_after:.2f} s"
    )
    assert limit <= timed_out_after < limit + 2.0


@pytest.mark.timeout(60)
def test_unpicklable_results_and_exceptions_fail_with_serialization_error_and_the_worker_lives_on() -> None:
    before = descendants()
    with SchedulerClusterCombo(n_workers=1, **FAULT_SETTINGS) as combo:
        agent = combo.worker_pids()[0]
        with Client(address=combo.get_address(), timeout_seconds=30, heartbeat_interval_seconds=0.5) as client:
            processor = client.submit(fault_tasks.processor_pid).result(timeout=30)
            cases = {
                "a returned lock": (fault_tasks.return_lock, "lock"),
                "an exception that refuses pickling": (fault_tasks.raise_unpicklable, "UnpicklableError"),
                "an exception that cannot be rebuilt": (fault_tasks.raise_unrebuildable, "UnrebuildableError"),
            }
            messages = {}
            for name, (function, type_name) in cases.items():
                with pytest.raises(SerializationError) as raised:
                    client.submit(function).result(timeout=30)
                messages[name] = str(raised.value)
                assert type_name in messages[name], (name, messages[name])
                # The same processor of the same worker runs the next task.
                assert client.submit(fault_tasks.processor_pid).result(timeout=30) == processor
            assert agent_of(processor, [agent]) == agent
            touched = set(tree(agent))
    print("\n[unpicklable] each failed with SerializationError naming its type; the same processor lived on:")
    for name, message in messages.items():
        print(f"  {name}: {message}")
    assert wait_gone(touched) == set()
    assert wait_no_descendants(before) == set()
