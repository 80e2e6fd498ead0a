"""A pending ``ScalerFuture`` is small, and still a real ``concurrent.futures.Future``.

Its ``_condition`` is a two-slot stand-in for ``threading.Condition`` (``future.py``); these
tests check that it behaves as the standard one does where ``concurrent.futures`` uses it, and
that a future lives no longer than its owner's and its user's references (no cycles: it is freed
without waiting for the cyclic garbage collector).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import threading
import time
import weakref
from typing import Any

import pytest

from scaler.client.future import ScalerFuture
from scaler.client.future_manager import ClientFutureManager
from scaler.protocol.messages import CancelConfirmType, Message, TaskCancelConfirm, TaskResult, TaskStatus

pytestmark = pytest.mark.timeout(60)


def make_manager() -> tuple[ClientFutureManager, list[Message]]:
    sent: list[Message] = []

    def decode(result: TaskResult) -> tuple[bool, Any]:
        return True, result.payload.decode()

    return ClientFutureManager(sent.append, decode), sent


def test_a_future_has_every_attribute_the_base_class_sets() -> None:
    base = set(vars(concurrent.futures.Future()))
    manager, _ = make_manager()
    future = manager.create(b"t1")
    assert base <= set(dir(future)), base - set(dir(future))
    assert isinstance(future, concurrent.futures.Future)
    assert not future.done() and future.running()


def test_the_condition_is_reentrant_and_refuses_waits_and_notifies_without_the_lock() -> None:
    manager, _ = make_manager()
    condition = manager.create(b"t1")._condition
    with condition, condition:  # a future's methods nest
        assert condition.wait(0) is False
        assert condition.wait(0.01) is False
        condition.notify_all()  # nobody waits: nothing to do
    with pytest.raises(RuntimeError):
        condition.wait(0)
    with pytest.raises(RuntimeError):
        condition.notify()


def test_notify_wakes_each_waiter_once_and_a_timed_out_waiter_leaves_no_trace() -> None:
    manager, _ = make_manager()
    condition = manager.create(b"t1")._condition
    woken: list[bool] = []

    def waiter() -> None:
        with condition:
            woken.append(condition.wait(30))

    threads = [threading.Thread(target=waiter) for _ in range(3)]
    for thread in threads:
        thread.start()
    while True:  # until all three sleep in wait()
        with condition:
            if len(condition._waiters or ()) == 3:
                break
        time.sleep(0.001)
    with condition:
        condition.notify(1)
    with condition:
        condition.notify_all()
    for thread in threads:
        thread.join(30)
    assert woken == [True, True, True]
    with condition:
        assert condition.wait(0.001) is False
        assert not condition._waiters  # the timed-out sleeper took itself off


def test_wait_for_returns_the_predicate_once_true_or_when_time_is_up() -> None:
    manager, _ = make_manager()
    condition = manager.create(b"t1")._condition
    flag = threading.Event()

    def setter() -> None:
        with condition:
            flag.set()
            condition.notify_all()

    with condition:
        assert condition.wait_for(flag.is_set, 0.01) is False
        threading.Timer(0.01, setter).start()
        assert condition.wait_for(flag.is_set, 30) is True


def test_a_result_wakes_result_wait_as_completed_callbacks_and_await() -> None:
    manager, _ = make_manager()
    futures = [manager.create(b"t%d" % number) for number in range(3)]
    called: list[object] = []
    futures[0].add_done_callback(called.append)
    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(futures[1].result(timeout=30)))
    reader.start()

    async def awaited() -> object:
        return await futures[2]

    def deliver() -> None:
        for number in range(3):
            manager.on_task_result(TaskResult(b"t%d" % number, TaskStatus.SUCCESS, b"v%d" % number, 1))

    threading.Timer(0.05, deliver).start()
    assert asyncio.run(asyncio.wait_for(awaited(), 30)) == "v2"
    assert {future.result() for future in concurrent.futures.as_completed(futures, timeout=30)} == {"v0", "v1", "v2"}
    reader.join(30)
    assert got == ["v1"] and called == [futures[0]]


def test_futures_are_freed_by_reference_counting_once_answered_and_dropped() -> None:
    manager, _ = make_manager()
    gc.disable()  # what frees them must not be the cyclic collector
    try:
        futures = [manager.create(b"t%d" % number) for number in range(100)]
        for future in futures[:50]:
            future.result  # noqa: B018 - a bound method made and dropped leaves nothing behind
            manager.on_task_result(TaskResult(future.task_id, TaskStatus.SUCCESS, b"v", 1))
        for future in futures[50:]:
            manager.on_task_cancel_confirm(TaskCancelConfirm(future.task_id, CancelConfirmType.CANCELED))
        assert all(future.done() for future in futures)
        refs = [weakref.ref(future) for future in futures]
        del futures, future
        assert [ref() for ref in refs] == [None] * 100
        assert manager.pending_count() == 0
    finally:
        gc.enable()


def test_a_waited_on_future_is_freed_too() -> None:
    manager, _ = make_manager()
    future: ScalerFuture | None = manager.create(b"t1")
    assert future is not None
    threading.Timer(0.01, manager.on_task_result, [TaskResult(b"t1", TaskStatus.SUCCESS, b"v", 1)]).start()
    assert future.result(timeout=30) == "v"
    ref = weakref.ref(future)
    gc.disable()
    try:
        future = None
        assert ref() is None
    finally:
        gc.enable()


def test_callbacks_stay_with_their_own_future_and_run_once() -> None:
    manager, _ = make_manager()
    first, second = manager.create(b"t1"), manager.create(b"t2")
    calls: list[tuple[str, object]] = []
    first.add_done_callback(lambda future: calls.append(("a", future)))
    first.add_done_callback(lambda future: calls.append(("b", future)))
    assert not second._done_callbacks
    manager.on_task_result(TaskResult(b"t2", TaskStatus.SUCCESS, b"v", 1))
    assert calls == []
    manager.on_task_result(TaskResult(b"t1", TaskStatus.SUCCESS, b"v", 1))
    assert calls == [("a", first), ("b", first)]
    second.add_done_callback(lambda future: calls.append(("c", future)))  # done already: called at once
    assert calls[2:] == [("c", second)]
