"""Big results kept on the scheduler: fetched when needed, freed once, through the manager only.

No sockets: the manager's ``send`` collects messages, and the tests answer each ``ObjectRequest``
with an ``ObjectResponse`` by hand, as the scheduler would.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from scaler.client.future import ScalerFuture
from scaler.client.future_manager import ClientFutureManager
from scaler.errors import DisconnectedError, ScalerError
from scaler.protocol.messages import (
    CancelConfirmType,
    Message,
    ObjectInstruction,
    ObjectInstructionType,
    ObjectRequest,
    ObjectResponse,
    TaskCancel,
    TaskCancelConfirm,
    TaskResult,
    TaskResultWanted,
    TaskStatus,
)

JOIN_SECONDS = 10.0


class Harness:
    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.requested = threading.Event()
        self.agent_thread = False
        self.manager = ClientFutureManager(self._send, self._decode, lambda: self.agent_thread)

    def _send(self, message: Message) -> None:
        self.sent.append(message)
        if isinstance(message, ObjectRequest):
            self.requested.set()

    @staticmethod
    def _decode(result: TaskResult) -> tuple[bool, Any]:
        if result.status is TaskStatus.SUCCESS:
            return True, result.payload.decode()
        return False, ValueError(result.payload.decode())

    def create(self, task_id: bytes = b"t1", **options: Any) -> ScalerFuture:
        return self.manager.create(task_id, **options)

    def kept(self, future: ScalerFuture, status: TaskStatus = TaskStatus.SUCCESS, **profile: Any) -> None:
        """The scheduler kept the result under the task's id, as it does."""
        result = TaskResult(future.task_id, status, b"", 0, result_object_id=future.task_id, **profile)
        self.manager.on_task_result(result)

    def respond(self, future: ScalerFuture, value: str = "big value", found: bool = True) -> None:
        payload = value.encode() if found else b""
        self.manager.on_object_response(ObjectResponse([future.task_id], [payload], [found]))

    def wanted(self) -> list[bytes]:
        return [i for message in self.sent if isinstance(message, TaskResultWanted) for i in message.task_ids]

    def requests(self) -> list[bytes]:
        return [i for message in self.sent if isinstance(message, ObjectRequest) for i in message.object_ids]

    def deletes(self) -> list[bytes]:
        return [
            i
            for message in self.sent
            if isinstance(message, ObjectInstruction) and message.kind is ObjectInstructionType.DELETE
            for i in message.object_ids
        ]


@pytest.fixture
def harness() -> Iterator[Harness]:
    made = Harness()
    yield made
    made.manager.validate()  # every test leaves the manager and its futures consistent


def in_thread(call: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(call())
        except BaseException as error:  # noqa: BLE001 - handed to the test
            out.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_a_kept_result_makes_the_future_done_without_fetching(harness: Harness) -> None:
    future = harness.create()
    harness.kept(future)
    assert future.done() and not future.cancelled()
    assert harness.requests() == []
    assert harness.manager.pending_count() == 0
    assert harness.manager.delayed_count() == 1
    assert future.cancel() is False  # finished: nothing is sent
    assert not any(isinstance(message, TaskCancel) for message in harness.sent)


def test_result_fetches_once_then_deletes(harness: Harness) -> None:
    future = harness.create()
    harness.kept(future)
    thread, out = in_thread(future.result)
    assert harness.requested.wait(JOIN_SECONDS)
    assert harness.requests() == [b"t1"]
    harness.respond(future)
    thread.join(JOIN_SECONDS)
    assert out == ["big value"]
    assert future.result(timeout=0) == "big value"
    assert harness.requests() == [b"t1"]  # asked once
    assert harness.deletes() == [b"t1"]
    assert harness.manager.delayed_count() == 0


def test_a_result_call_waiting_before_the_result_arrives_fetches_at_once(harness: Harness) -> None:
    future = harness.create()
    thread, out = in_thread(future.result)
    while not future._waiters:  # the thread is inside result(), which waits for the value
        threading.Event().wait(0.001)
    harness.kept(future)
    assert harness.requested.wait(JOIN_SECONDS)
    harness.respond(future, "later")
    thread.join(JOIN_SECONDS)
    assert out == ["later"]


def test_exception_of_a_kept_failure_is_fetched_too(harness: Harness) -> None:
    future = harness.create()
    harness.kept(future, TaskStatus.FAILED)
    thread, out = in_thread(future.exception)
    assert harness.requested.wait(JOIN_SECONDS)
    harness.respond(future, "broken")
    thread.join(JOIN_SECONDS)
    assert isinstance(out[0], ValueError) and str(out[0]) == "broken"
    with pytest.raises(ValueError, match="broken"):
        future.result(timeout=0)


def test_a_result_timeout_still_fetches_and_a_later_call_gets_it(harness: Harness) -> None:
    future = harness.create()
    harness.kept(future)
    with pytest.raises(concurrent.futures.TimeoutError):
        future.result(timeout=0)
    assert harness.requests() == [b"t1"]
    harness.respond(future)
    assert future.result(timeout=0) == "big value"


def test_a_done_callback_fetches_and_fires_once_with_the_value(harness: Harness) -> None:
    future = harness.create()
    seen: list[str] = []
    future.add_done_callback(lambda done: seen.append(done.result()))
    harness.kept(future)
    assert harness.requests() == [b"t1"]  # fetched because a callback waits
    assert seen == []
    harness.respond(future)
    assert seen == ["big value"]
    harness.respond(future)  # a duplicate answer changes nothing
    assert seen == ["big value"]


def test_a_callback_added_after_the_result_is_kept_fetches(harness: Harness) -> None:
    future = harness.create()
    harness.kept(future)
    seen: list[str] = []
    future.add_done_callback(lambda done: seen.append(done.result()))
    assert harness.requests() == [b"t1"] and seen == []
    harness.respond(future)
    assert seen == ["big value"]


@pytest.mark.parametrize("how", ["wait", "as_completed"])
def test_wait_and_as_completed_fetch_kept_results(harness: Harness, how: str) -> None:
    futures = [harness.create(bytes([i])) for i in range(3)]
    harness.kept(futures[0])
    harness.manager.on_task_result(TaskResult(futures[1].task_id, TaskStatus.SUCCESS, b"inline", 0))

    def wait_all() -> Any:
        if how == "wait":
            return concurrent.futures.wait(futures, timeout=JOIN_SECONDS)
        return list(concurrent.futures.as_completed(futures, timeout=JOIN_SECONDS))

    thread, out = in_thread(wait_all)
    assert harness.requested.wait(JOIN_SECONDS)
    assert harness.requests() == [futures[0].task_id]
    harness.kept(futures[2])  # arrives while waiting: fetched at once
    harness.respond(futures[0], "zero")
    harness.respond(futures[2], "two")
    thread.join(JOIN_SECONDS)
    assert not thread.is_alive()
    assert [future.result(timeout=0) for future in futures] == ["zero", "inline", "two"]
    if how == "wait":
        done, not_done = out[0]
        assert done == set(futures) and not not_done
    else:
        assert sorted(out[0], key=futures.index) == futures


def test_await_fetches_a_kept_result(harness: Harness) -> None:
    future = harness.create()
    harness.kept(future)

    async def main() -> str:
        loop = asyncio.get_running_loop()
        loop.call_soon(lambda: threading.Thread(target=harness.respond, args=(future, "awaited")).start())
        value: str = await future
        return value

    assert asyncio.run(main()) == "awaited"


def test_a_dropped_future_frees_its_kept_result(harness: Harness) -> None:
    future = harness.create()
    harness.kept(future)
    del future
    gc.collect()
    assert harness.deletes() == [b"t1"]
    assert harness.requests() == []
    assert harness.manager.delayed_count() == 0


def test_a_fetched_future_dropped_later_frees_nothing_more(harness: Harness) -> None:
    future = harness.create()
    harness.kept(future)
    future.add_done_callback(lambda _: None)
    harness.respond(future)
    del future
    gc.collect()
    assert harness.deletes() == [b"t1"]


def test_a_result_kept_after_cancel_was_requested_is_freed_and_the_future_cancelled(harness: Harness) -> None:
    future = harness.create()
    assert future.cancel(timeout=0) is False
    harness.kept(future)
    assert future.cancelled()
    assert harness.deletes() == [b"t1"]


def test_a_kept_result_for_an_unknown_task_is_freed(harness: Harness) -> None:
    harness.manager.on_task_result(TaskResult(b"zz", TaskStatus.SUCCESS, b"", 0, result_object_id=b"zz"))
    assert harness.deletes() == [b"zz"]


def test_a_result_the_scheduler_lost_fails_clearly(harness: Harness) -> None:
    future = harness.create()
    harness.kept(future)
    future.add_done_callback(lambda _: None)
    harness.respond(future, found=False)
    with pytest.raises(ScalerError, match="no longer holds its result"):
        future.result(timeout=0)
    assert harness.deletes() == []


@pytest.mark.parametrize("fetching", [False, True])
def test_leaving_fails_unfetched_results(harness: Harness, fetching: bool) -> None:
    future = harness.create()
    harness.kept(future)
    if fetching:
        future.add_done_callback(lambda _: None)
    harness.manager.cancel_all()
    with pytest.raises(DisconnectedError, match="before this task's result was fetched"):
        future.result(timeout=0)


def test_losing_the_scheduler_fails_unfetched_results_with_its_error(harness: Harness) -> None:
    future = harness.create()
    harness.kept(future)
    harness.manager.fail_all(DisconnectedError("gone"))
    with pytest.raises(DisconnectedError, match="gone"):
        future.result(timeout=0)


def test_waiting_for_a_kept_result_on_the_agent_thread_raises(harness: Harness) -> None:
    future = harness.create()
    harness.kept(future)
    harness.agent_thread = True
    with pytest.raises(RuntimeError, match="agent thread"):
        future.result(timeout=1)
    harness.agent_thread = False
    harness.respond(future)
    harness.agent_thread = True
    assert future.result() == "big value"  # fetched already: no wait


# -- profiling and finish hooks --------------------------------------------------------------------------


def test_profiling_info_is_there_once_the_result_is(harness: Harness) -> None:
    future = harness.create(profiling=True)
    with pytest.raises(ValueError, match="not finished"):
        future.profiling_info()
    harness.manager.on_task_result(
        TaskResult(b"t1", TaskStatus.SUCCESS, b"v", 0, duration_seconds=1.5, cpu_seconds=0.5, peak_memory_bytes=99)
    )
    info = future.profiling_info()
    assert (info.duration_s, info.cpu_time_s, info.memory_peak) == (1.5, 0.5, 99)


def test_profiling_info_of_a_kept_result_is_there_before_the_fetch(harness: Harness) -> None:
    future = harness.create(profiling=True)
    harness.kept(future, duration_seconds=2.0)
    assert future.profiling_info().duration_s == 2.0


def test_profiling_info_without_profiling_raises(harness: Harness) -> None:
    future = harness.create()
    harness.manager.on_task_result(TaskResult(b"t1", TaskStatus.SUCCESS, b"v", 0, duration_seconds=1.0))
    with pytest.raises(ValueError, match="profiling=True"):
        future.profiling_info()


@pytest.mark.parametrize("how", ["result", "kept", "confirm", "cancel_all", "fail_all"])
def test_finish_hook_runs_once_whatever_ends_the_task(harness: Harness, how: str) -> None:
    calls: list[int] = []
    future = harness.create(on_finish=lambda: calls.append(1))
    if how == "result":
        harness.manager.on_task_result(TaskResult(b"t1", TaskStatus.SUCCESS, b"v", 0))
    elif how == "kept":
        harness.kept(future)
    elif how == "confirm":
        harness.manager.on_task_cancel_confirm(TaskCancelConfirm(b"t1", CancelConfirmType.CANCELED))
    elif how == "cancel_all":
        harness.manager.cancel_all()
    else:
        harness.manager.fail_all(DisconnectedError("gone"))
    harness.manager.on_task_result(TaskResult(b"t1", TaskStatus.SUCCESS, b"v", 0))
    harness.manager.cancel_all()
    assert calls == [1]


def test_finish_hook_waits_for_a_refused_cancel(harness: Harness) -> None:
    calls: list[int] = []
    harness.create(on_finish=lambda: calls.append(1))
    harness.manager.on_task_cancel_confirm(TaskCancelConfirm(b"t1", CancelConfirmType.CANCEL_FAILED))
    assert calls == []
    harness.manager.on_task_result(TaskResult(b"t1", TaskStatus.SUCCESS, b"v", 0))
    assert calls == [1]


def test_forget_drops_the_finish_hook(harness: Harness) -> None:
    calls: list[int] = []
    harness.create(on_finish=lambda: calls.append(1))
    harness.manager.forget(b"t1")
    harness.manager.cancel_all()
    assert calls == []


def wait_until_blocked(future: ScalerFuture) -> None:
    """Wait until a thread sleeps on the future's condition (test-only peek at threading internals)."""
    deadline = threading.Event()
    for _ in range(10_000):
        if future._condition._waiters:  # type: ignore[attr-defined]
            return
        deadline.wait(0.001)
    raise AssertionError("no thread waits on the future")


def test_notifications_that_are_not_the_outcome_do_not_end_a_wait(harness: Harness) -> None:
    future = harness.create()
    thread, out = in_thread(lambda: future.result(timeout=JOIN_SECONDS))
    wait_until_blocked(future)
    harness.manager.on_task_cancel_confirm(TaskCancelConfirm(b"t1", CancelConfirmType.CANCEL_FAILED))
    harness.kept(future)  # notifies too, then fetches because result() wants the value
    assert harness.requested.wait(JOIN_SECONDS)
    assert thread.is_alive() and out == []
    harness.respond(future, "patient")
    thread.join(JOIN_SECONDS)
    assert out == ["patient"]


def test_a_task_that_raised_timeout_error_raises_it_at_once() -> None:
    manager = ClientFutureManager(lambda _: None, lambda result: (False, TimeoutError("the task's own")))
    future = manager.create(b"t1")
    manager.on_task_result(TaskResult(b"t1", TaskStatus.FAILED, b"", 0))
    for _ in range(2):
        with pytest.raises(TimeoutError, match="the task's own"):
            future.result(timeout=JOIN_SECONDS)
    assert isinstance(future.exception(timeout=0), TimeoutError)


def test_waiting_on_pending_futures_sends_no_hint_until_a_result_was_kept(harness: Harness) -> None:
    # A client whose results are all small must not pay a message per task for the hint.
    first = harness.create(b"t1")
    thread, out = in_thread(first.result)
    while not first._waiters:
        threading.Event().wait(0.001)
    assert harness.wanted() == []
    harness.manager.on_task_result(TaskResult(b"t1", TaskStatus.SUCCESS, b"small", 0))
    thread.join(JOIN_SECONDS)
    assert out == ["small"]
    assert harness.wanted() == []


def test_after_a_kept_result_waiting_on_a_pending_future_asks_for_its_result_once(harness: Harness) -> None:
    kept = harness.create(b"t1")
    harness.kept(kept)
    pending = harness.create(b"t2")
    thread, out = in_thread(pending.result)
    while not pending._waiters:
        threading.Event().wait(0.001)
    pending.add_done_callback(lambda _: None)  # wanted already: no second hint
    assert harness.wanted() == [b"t2"]
    # The scheduler honoured the hint: the big result comes straight in the TaskResult, nothing to fetch.
    harness.manager.on_task_result(TaskResult(b"t2", TaskStatus.SUCCESS, b"big value", 0))
    thread.join(JOIN_SECONDS)
    assert out == ["big value"]
    assert b"t2" not in harness.requests() and b"t2" not in harness.deletes()
    assert harness.wanted() == [b"t2"]
    assert harness.requests() == [], "the kept one is still fetched only when someone needs it"


def test_a_hint_that_came_too_late_leaves_the_kept_result_to_be_fetched(harness: Harness) -> None:
    harness.kept(harness.create(b"t1"))
    pending = harness.create(b"t2")
    thread, out = in_thread(pending.result)
    while not pending._waiters:
        threading.Event().wait(0.001)
    assert harness.wanted() == [b"t2"]
    harness.kept(pending)  # the result had ended before the hint reached the scheduler
    assert harness.requested.wait(JOIN_SECONDS)
    harness.respond(pending, "fetched")
    thread.join(JOIN_SECONDS)
    assert out == ["fetched"]
    assert b"t2" in harness.deletes()
