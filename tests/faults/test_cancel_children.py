"""A parent task that is stopped takes the tasks it submitted with it.

A parent submits 4 children of 6 s each and waits on them, on 2 workers, so 2 children run and
2 wait. The parent is then stopped: cancelled, past its own timeout, or by its processor's death.
Its children must be stopped too, at once (their processes killed, the queued ones never
started), and the cluster must be free for a fresh task. Before parent links, the children ran
to their end: the scheduler only dropped them when the dead parent's client timed out (60 s).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import cloudpickle
import pytest

from scaler import Client, SchedulerClusterCombo
from scaler.errors import ProcessorDiedError, TaskTimeoutError
from scaler.worker import processor_context
from tests.faults import fault_tasks
from tests.faults.support import Entry, by_index, read_ledger, wait_gone, wait_workers
from tests.integration.conftest import descendants, wait_no_descendants

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import the tests package

CHILDREN = 4
CHILD_SECONDS = 6.0
CHILDREN_GONE_WITHIN = 3.0  # seconds; measured at ~0.1 s, the slack is for a loaded machine
FRESH_TASK_WITHIN = 2.0
PARENT_INDEX = 100  # the parent's own ledger lines


def _append(path: str, kind: str, index: int) -> None:
    with open(path, "a") as ledger:
        ledger.write(f"{kind} {index} {os.getpid()} {time.time():.6f}\n")


def child(path: str, index: int, seconds: float) -> int:
    _append(path, "start", index)
    time.sleep(seconds)
    _append(path, "done", index)
    return index


def parent(path: str, children: int, seconds: float) -> list[int]:
    """Submit the children and wait for all of them (a wait that parks this processor)."""
    _append(path, "start", PARENT_INDEX)
    with Client(timeout_seconds=30) as client:
        futures = [client.submit(child, path, index, seconds) for index in range(children)]
        return [future.result() for future in futures]


def parent_that_dies(path: str, children: int, seconds: float, started: int) -> None:
    """Submit the children, let ``started`` of them begin, then die without a goodbye."""
    _append(path, "start", PARENT_INDEX)
    client = Client(timeout_seconds=30)
    futures = [client.submit(child, path, index, seconds) for index in range(children)]
    with processor_context.blocked():  # parked: this worker may run a child meanwhile
        while len(_starts(path)) < started:
            time.sleep(0.02)
    assert futures  # they stay referenced, and pending, until the end
    os._exit(1)


def parent_that_dies_once(path: str, children: int, seconds: float) -> list[int]:
    """The first run dies as ``parent_that_dies`` does; the retry submits quick children, numbered from 10."""
    if not os.path.exists(path) or PARENT_INDEX not in by_index(read_ledger(path), "start"):
        parent_that_dies(path, children, seconds, 2)
    _append(path, "start", PARENT_INDEX)
    with Client(timeout_seconds=30) as client:
        return client.map(child, [path] * children, range(10, 10 + children), [0.1] * children)


def _starts(path: str) -> dict[int, list[Entry]]:
    if not os.path.exists(path):
        return {}
    return {index: entries for index, entries in by_index(read_ledger(path), "start").items() if index < CHILDREN}


def _wait_children_started(path: str, count: int, timeout: float = 30.0) -> dict[int, list[Entry]]:
    deadline = time.monotonic() + timeout
    while len(_starts(path)) < count:
        assert time.monotonic() < deadline, f"only {len(_starts(path))} children started"
        time.sleep(0.02)
    return _starts(path)


def _children_die(started: dict[int, list[Entry]], since: float, label: str) -> None:
    """The processes of the children that started are gone within the bound (from ``since``)."""
    pids = {entry.pid for entries in started.values() for entry in entries}
    left = wait_gone(pids, timeout=max(0.0, since + CHILDREN_GONE_WITHIN - time.monotonic()))
    assert left == set(), f"children still running {CHILDREN_GONE_WITHIN}s after their parent stopped: {left}"
    print(f"[{label}] {len(pids)} running children gone {time.monotonic() - since:.3f}s after the parent stopped")


def _fresh_task_runs(client: Client, label: str) -> None:
    """A task submitted now runs at once: the children no longer hold the workers."""
    started = time.monotonic()
    assert client.submit(fault_tasks.processor_pid).result(timeout=FRESH_TASK_WITHIN) > 0
    print(f"[{label}] a fresh task ran in {time.monotonic() - started:.3f}s")


def _no_late_starts(path: str, stopped_wall: float) -> None:
    """The queued children never started, and no child ran to its end."""
    entries = read_ledger(path)
    late = [
        entry for entry in entries if entry.kind == "start" and entry.index < CHILDREN and entry.time > stopped_wall
    ]
    done = [entry for entry in entries if entry.kind == "done" and entry.index < CHILDREN]
    assert late == [], f"queued children started after their parent was stopped: {late}"
    assert done == [], f"children ran to their end: {done}"


def _run(tmp_path: Path, label: str, max_task_retries: int = 3) -> None:
    before = descendants()
    path = str(tmp_path / "ledger")
    with (
        SchedulerClusterCombo(n_workers=2, max_task_retries=max_task_retries, logging_level="WARNING") as combo,
        Client(address=combo.get_address(), timeout_seconds=30) as client,
    ):
        wait_workers(client, combo.worker_pids())
        print()
        if label == "processor death":
            future = client.submit(parent_that_dies, path, CHILDREN, CHILD_SECONDS, 2)
            with pytest.raises(ProcessorDiedError):
                future.result(timeout=30)
            since = time.monotonic()  # when the client learned the parent died
        elif label == "timeout":
            future = client.submit_verbose(parent, (path, CHILDREN, CHILD_SECONDS), {}, timeout_seconds=2)
            _wait_children_started(path, 2)
            with pytest.raises(TaskTimeoutError):
                future.result(timeout=30)
            since = time.monotonic()  # when the client learned the parent timed out
        else:
            future = client.submit(parent, path, CHILDREN, CHILD_SECONDS)
            _wait_children_started(path, 2)
            time.sleep(max(0.0, 2.0 - (time.time() - by_index(read_ledger(path), "start")[PARENT_INDEX][0].time)))
            since = time.monotonic()
            assert future.cancel(timeout=10)
            print(f"[{label}] cancel() returned True in {time.monotonic() - since:.3f}s")
        stopped_wall = time.time()
        started = _starts(path)
        assert len(started) >= 2, "the children should have started before their parent stopped"
        _children_die(started, since, label)
        _fresh_task_runs(client, label)
        _no_late_starts(path, stopped_wall + 0.5)
    assert wait_no_descendants(before) == set()


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_cancelling_a_parent_cancels_its_running_and_queued_children(tmp_path: Path) -> None:
    _run(tmp_path, "cancel")


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_parent_past_its_timeout_takes_its_children_with_it(tmp_path: Path) -> None:
    _run(tmp_path, "timeout")


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_parent_whose_processor_dies_takes_its_children_with_it(tmp_path: Path) -> None:
    _run(tmp_path, "processor death", max_task_retries=0)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_retried_parent_runs_without_the_children_of_its_dead_run(tmp_path: Path) -> None:
    """The first run's children would hold both workers for 6 s; the retry must not wait for them."""
    before = descendants()
    path = str(tmp_path / "ledger")
    with (
        SchedulerClusterCombo(n_workers=2, max_task_retries=1, logging_level="WARNING") as combo,
        Client(address=combo.get_address(), timeout_seconds=30) as client,
    ):
        wait_workers(client, combo.worker_pids())
        submitted = time.monotonic()
        assert client.submit(parent_that_dies_once, path, CHILDREN, CHILD_SECONDS).result(timeout=30) == [
            10,
            11,
            12,
            13,
        ]
        seconds = time.monotonic() - submitted
        print(f"\n[retry] the retried parent returned {seconds:.3f}s after it was first submitted")
        assert seconds < CHILD_SECONDS - 1, "the retry waited for the children of the dead run"
        first_run = {entry.pid for entries in _starts(path).values() for entry in entries}
        assert first_run and wait_gone(first_run, timeout=0) == set()
        _no_late_starts(path, time.time())
    assert wait_no_descendants(before) == set()
