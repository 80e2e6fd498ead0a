"""``ScalerFuture`` and ``ClientFutureManager``, driven by feeding them the scheduler's messages.

No sockets: the manager's ``send`` collects into a list and ``decode_result`` is a stub. Threads
block in ``cancel()`` only where the contract says it blocks; they are released by events and
messages, never by sleeping.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from scaler.client.future import ScalerFuture
from scaler.client.future_manager import ClientFutureManager
from scaler.errors import DisconnectedError, SerializationError
from scaler.protocol.messages import CancelConfirmType, Message, TaskCancel, TaskCancelConfirm, TaskResult, TaskStatus

CANCELED = CancelConfirmType.CANCELED
CANCEL_FAILED = CancelConfirmType.CANCEL_FAILED
CANCEL_NOT_FOUND = CancelConfirmType.CANCEL_NOT_FOUND

MANAGER_LOGGER = "scaler.client.future_manager"
JOIN_SECONDS = 10.0  # generous: only reached when a test is about to fail


class RemoteFailure(Exception):
    """What the stub decoder returns for a FAILED result."""


class Harness:
    """A manager whose sends are collected and whose results decode to ``payload.decode()``."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.decoded: list[bytes] = []
        self.cancel_sent = threading.Event()
        self.would_block: Callable[[], bool] = lambda: False
        self.manager = ClientFutureManager(self._send, self._decode, lambda: self.would_block())

    def _send(self, message: Message) -> None:
        self.sent.append(message)
        if isinstance(message, TaskCancel):
            self.cancel_sent.set()

    def _decode(self, result: TaskResult) -> tuple[bool, Any]:
        self.decoded.append(result.task_id)
        if result.status is TaskStatus.SUCCESS:
            return True, result.payload.decode()
        return False, RemoteFailure(result.payload.decode())

    def create(self, task_id: bytes = b"t1") -> ScalerFuture:
        return self.manager.create(task_id)

    def result(self, future: ScalerFuture, value: str = "value", status: TaskStatus = TaskStatus.SUCCESS) -> None:
        self.manager.on_task_result(TaskResult(future.task_id, status, value.encode(), 0))

    def confirm(self, future: ScalerFuture, kind: CancelConfirmType) -> None:
        self.manager.on_task_cancel_confirm(TaskCancelConfirm(future.task_id, kind))

    def cancels_sent(self) -> list[bytes]:
        return [message.task_id for message in self.sent if isinstance(message, TaskCancel)]


@pytest.fixture
def harness() -> Iterator[Harness]:
    made = Harness()
    yield made
    made.manager.validate()  # every test leaves the manager and its futures consistent


class CancelThread:
    """Runs ``future.cancel(timeout)`` on another thread, the way a user's thread would block in it."""

    def __init__(self, future: ScalerFuture, timeout: float | None = None) -> None:
        self.returned: list[bool] = []
        self.errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(future, timeout), daemon=True)
        self._thread.start()

    def _run(self, future: ScalerFuture, timeout: float | None) -> None:
        try:
            self.returned.append(future.cancel(timeout=timeout))
        except BaseException as error:  # pragma: no cover - reported by join()
            self.errors.append(error)

    def join(self) -> bool:
        self._thread.join(JOIN_SECONDS)
        assert not self._thread.is_alive(), "cancel() did not return"
        assert self.errors == []
        (returned,) = self.returned
        return returned

    def is_alive(self) -> bool:
        return self._thread.is_alive()


def start_blocking_cancel(harness: Harness, future: ScalerFuture, timeout: float | None = None) -> CancelThread:
    """Start a blocking cancel and wait until its TaskCancel has been sent."""
    harness.cancel_sent.clear()
    thread = CancelThread(future, timeout)
    assert harness.cancel_sent.wait(JOIN_SECONDS), "cancel() sent no TaskCancel"
    return thread


def assert_cancelled(future: ScalerFuture) -> None:
    assert future.done()
    assert future.cancelled()
    with pytest.raises(concurrent.futures.CancelledError):
        future.result(timeout=0)
    with pytest.raises(concurrent.futures.CancelledError):
        future.exception(timeout=0)


def assert_pending(future: ScalerFuture) -> None:
    assert not future.done()
    assert not future.cancelled()
    with pytest.raises(concurrent.futures.TimeoutError):
        future.result(timeout=0)


# -- plain results ----------------------------------------------------------------------------------


def test_new_future_is_a_pending_concurrent_future(harness: Harness) -> None:
    future = harness.create(b"abc")
    assert isinstance(future, concurrent.futures.Future)
    assert future.task_id == b"abc"
    assert_pending(future)
    assert future.running()  # as in Scaler: from submit until done (issue 10)
    assert harness.manager.pending_count() == 1
    assert harness.sent == []


def test_result_completes_the_future(harness: Harness) -> None:
    future = harness.create()
    harness.result(future, "42")
    assert future.done() and not future.cancelled()
    assert future.result(timeout=0) == "42"
    assert future.exception(timeout=0) is None
    assert harness.manager.pending_count() == 0
    assert harness.decoded == [b"t1"]


def test_results_go_to_the_right_futures(harness: Harness) -> None:
    futures = [harness.create(bytes([i])) for i in range(5)]
    for future in reversed(futures):
        harness.result(future, f"r{future.task_id[0]}")
    assert [future.result(timeout=0) for future in futures] == [f"r{i}" for i in range(5)]


@pytest.mark.parametrize("status", [status for status in TaskStatus if status is not TaskStatus.SUCCESS])
def test_decoded_exception_is_raised_by_result(harness: Harness, status: TaskStatus) -> None:
    future = harness.create()
    harness.result(future, "boom", status=status)
    error = future.exception(timeout=0)
    assert isinstance(error, RemoteFailure)
    with pytest.raises(RemoteFailure, match="boom") as info:
        future.result(timeout=0)
    assert info.value is error
    assert not future.cancelled()


def test_result_unblocks_a_waiting_thread(harness: Harness) -> None:
    future = harness.create()
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(future.result(timeout=JOIN_SECONDS)))
    waiter.start()
    harness.result(future, "late")
    waiter.join(JOIN_SECONDS)
    assert got == ["late"]


def test_second_result_for_the_same_task_is_ignored(harness: Harness) -> None:
    future = harness.create()
    harness.result(future, "first")
    harness.result(future, "second")
    assert future.result(timeout=0) == "first"
    assert harness.decoded == [b"t1"]


def test_result_for_an_unknown_task_is_ignored(harness: Harness) -> None:
    future = harness.create(b"known")
    harness.manager.on_task_result(TaskResult(b"unknown", TaskStatus.SUCCESS, b"x", 0))
    harness.manager.on_task_cancel_confirm(TaskCancelConfirm(b"unknown", CANCELED))
    harness.manager.on_task_cancel_confirm(TaskCancelConfirm(b"unknown", CANCEL_FAILED))
    assert_pending(future)
    assert harness.decoded == []


def test_forgotten_task_is_no_longer_tracked(harness: Harness) -> None:
    future = harness.create()
    harness.manager.forget(b"t1")
    harness.manager.forget(b"never-created")
    assert harness.manager.pending_count() == 0
    harness.result(future, "x")
    harness.manager.cancel_all()
    assert_pending(future)


@pytest.mark.parametrize("outcome", ["result", "exception", "cancel"])
def test_set_twice_raises_invalid_state(harness: Harness, outcome: str) -> None:
    future = harness.create()
    if outcome == "result":
        harness.result(future, "x")
    elif outcome == "exception":
        harness.result(future, "x", status=TaskStatus.FAILED)
    else:
        future.cancel(timeout=0)
        harness.confirm(future, CANCELED)
    with pytest.raises(concurrent.futures.InvalidStateError):
        future.set_result("again")
    with pytest.raises(concurrent.futures.InvalidStateError):
        future.set_exception(RuntimeError("again"))


# -- cancel: the contract, branch by branch -----------------------------------------------------------


def test_cancel_of_a_cancelled_future_returns_true_and_sends_nothing_more(harness: Harness) -> None:
    future = harness.create()
    assert future.cancel(timeout=0) is False  # pending, answer not in yet
    harness.confirm(future, CANCELED)
    assert future.cancel() is True
    assert future.cancel(timeout=0) is True
    assert harness.cancels_sent() == [b"t1"]


@pytest.mark.parametrize("status", [TaskStatus.SUCCESS, TaskStatus.FAILED])
def test_cancel_of_a_finished_future_returns_false_and_sends_nothing(harness: Harness, status: TaskStatus) -> None:
    future = harness.create()
    harness.result(future, "done", status=status)
    assert future.cancel() is False
    assert future.cancel(timeout=0) is False
    assert harness.sent == []
    assert not future.cancelled()


def test_cancel_sends_one_task_cancel_and_blocks_until_canceled(harness: Harness) -> None:
    future = harness.create()
    canceller = start_blocking_cancel(harness, future)
    assert harness.sent == [TaskCancel(b"t1")]
    assert canceller.is_alive()
    assert_pending(future)
    harness.confirm(future, CANCELED)
    assert canceller.join() is True
    assert_cancelled(future)
    assert harness.manager.pending_count() == 0


def test_second_cancel_while_in_flight_sends_nothing(harness: Harness) -> None:
    future = harness.create()
    first = start_blocking_cancel(harness, future)
    second = CancelThread(future)
    assert future.cancel(timeout=0) is False
    assert future.cancel(timeout=0.01) is False
    harness.confirm(future, CANCELED)
    assert first.join() is True
    assert second.join() is True
    assert harness.cancels_sent() == [b"t1"]


def test_cancel_not_found_cancels_and_logs_at_debug_only(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    future = harness.create(b"\xab\xcd")
    canceller = start_blocking_cancel(harness, future)
    harness.confirm(future, CANCEL_NOT_FOUND)
    assert canceller.join() is True
    assert_cancelled(future)
    mine = [record for record in caplog.records if record.name == MANAGER_LOGGER]
    assert any("abcd" in record.getMessage() for record in mine)
    assert all(record.levelno == logging.DEBUG for record in mine)
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


def test_cancel_failed_returns_false_and_the_future_completes_later(harness: Harness) -> None:
    future = harness.create()
    canceller = start_blocking_cancel(harness, future)
    harness.confirm(future, CANCEL_FAILED)
    assert canceller.join() is False
    assert_pending(future)
    assert harness.manager.pending_count() == 1
    harness.result(future, "finished anyway")
    assert future.result(timeout=0) == "finished anyway"
    assert not future.cancelled()


def test_cancel_failed_then_exception_is_raised_normally(harness: Harness) -> None:
    future = harness.create()
    future.cancel(timeout=0)
    harness.confirm(future, CANCEL_FAILED)
    harness.result(future, "boom", status=TaskStatus.FAILED)
    with pytest.raises(RemoteFailure, match="boom"):
        future.result(timeout=0)


def test_cancel_after_a_refusal_sends_a_new_request(harness: Harness) -> None:
    future = harness.create()
    assert future.cancel(timeout=0) is False
    harness.confirm(future, CANCEL_FAILED)
    canceller = start_blocking_cancel(harness, future)
    assert harness.cancels_sent() == [b"t1", b"t1"]
    harness.confirm(future, CANCELED)
    assert canceller.join() is True
    assert_cancelled(future)


def test_result_after_cancel_request_cancels_and_discards_the_result(harness: Harness) -> None:
    future = harness.create()
    canceller = start_blocking_cancel(harness, future)
    harness.result(future, "unwanted")
    assert canceller.join() is True
    assert_cancelled(future)
    assert harness.decoded == []  # never deserialized
    assert harness.manager.pending_count() == 0
    # The scheduler's answer to the cancel may still arrive; it changes nothing.
    harness.confirm(future, CANCEL_NOT_FOUND)
    assert_cancelled(future)


def test_failed_result_after_cancel_request_is_discarded_too(harness: Harness) -> None:
    future = harness.create()
    assert future.cancel(timeout=0) is False
    harness.result(future, "boom", status=TaskStatus.FAILED)
    assert_cancelled(future)
    assert harness.decoded == []


def test_timeout_returns_false_and_a_late_canceled_still_cancels(harness: Harness) -> None:
    future = harness.create()
    assert future.cancel(timeout=0.01) is False
    assert_pending(future)
    harness.confirm(future, CANCELED)
    assert_cancelled(future)
    assert future.cancel() is True
    assert harness.cancels_sent() == [b"t1"]


@pytest.mark.parametrize("late", ["not_found", "result"])
def test_timeout_then_late_answer_still_cancels(harness: Harness, late: str) -> None:
    future = harness.create()
    assert future.cancel(timeout=0) is False
    if late == "result":
        harness.result(future, "unwanted")
    else:
        harness.confirm(future, CANCEL_NOT_FOUND)
    assert_cancelled(future)
    assert harness.decoded == []


def test_blocked_cancel_with_a_timeout_is_woken_by_the_answer(harness: Harness) -> None:
    future = harness.create()
    canceller = start_blocking_cancel(harness, future, timeout=JOIN_SECONDS)
    harness.confirm(future, CANCELED)
    assert canceller.join() is True


def test_cancel_while_the_result_is_being_settled_loses_to_the_result() -> None:
    """The agent thread has taken the result (it is decoding it) when the user calls cancel()."""
    decoding = threading.Event()
    release = threading.Event()
    cancel_reached_wait = threading.Event()
    sent: list[Message] = []

    def slow_decode(result: TaskResult) -> tuple[bool, Any]:
        decoding.set()
        assert release.wait(JOIN_SECONDS)
        return True, "won"

    def would_block() -> bool:  # called by cancel() just before it waits
        cancel_reached_wait.set()
        return False

    manager = ClientFutureManager(sent.append, slow_decode, would_block)
    future = manager.create(b"t1")
    agent = threading.Thread(target=manager.on_task_result, args=(TaskResult(b"t1", TaskStatus.SUCCESS, b"", 0),))
    agent.start()
    assert decoding.wait(JOIN_SECONDS)
    canceller = CancelThread(future)
    assert cancel_reached_wait.wait(JOIN_SECONDS)
    release.set()
    agent.join(JOIN_SECONDS)
    assert canceller.join() is False
    assert future.result(timeout=0) == "won"
    assert sent == []  # too late to ask the scheduler anything


def test_cancel_on_the_agent_thread_does_not_block(harness: Harness) -> None:
    """A done-callback runs on the agent thread; cancelling another future there must not wait."""
    first = harness.create(b"first")
    second = harness.create(b"second")
    agent = threading.Thread(target=lambda: harness.result(first, "x"), name="agent")
    harness.would_block = lambda: threading.current_thread() is agent
    returned: list[bool] = []
    first.add_done_callback(lambda _: returned.append(second.cancel()))
    agent.start()
    agent.join(JOIN_SECONDS)
    if agent.is_alive():  # pragma: no cover - the bug this test looks for; unblock it before failing
        harness.confirm(second, CANCELED)
        agent.join(JOIN_SECONDS)
        pytest.fail("cancel() blocked the agent thread")
    assert returned == [False]
    assert harness.cancels_sent() == [b"second"]
    assert_pending(second)
    harness.confirm(second, CANCELED)  # the request stayed in flight
    assert_cancelled(second)


def test_cancel_elsewhere_still_blocks_while_agent_would_block_is_false(harness: Harness) -> None:
    future = harness.create()
    harness.would_block = lambda: threading.current_thread().name == "agent"
    canceller = start_blocking_cancel(harness, future)
    assert canceller.is_alive()
    harness.confirm(future, CANCEL_FAILED)
    assert canceller.join() is False


# -- callbacks, wait, as_completed ---------------------------------------------------------------------


def _settle(harness: Harness, future: ScalerFuture, how: str) -> None:
    if how == "result":
        harness.result(future, "x")
    elif how == "exception":
        harness.result(future, "x", status=TaskStatus.FAILED)
    elif how == "canceled":
        future.cancel(timeout=0)
        harness.confirm(future, CANCELED)
    elif how == "not_found":
        future.cancel(timeout=0)
        harness.confirm(future, CANCEL_NOT_FOUND)
    elif how == "result_after_cancel":
        future.cancel(timeout=0)
        harness.result(future, "x")
    elif how == "cancel_all":
        harness.manager.cancel_all()
    elif how == "fail_all":
        harness.manager.fail_all(DisconnectedError("gone"))
    elif how == "fail_all_after_cancel":
        future.cancel(timeout=0)
        harness.manager.fail_all(DisconnectedError("gone"))
    else:  # pragma: no cover
        raise AssertionError(how)


SETTLE_WAYS = [
    "result",
    "exception",
    "canceled",
    "not_found",
    "result_after_cancel",
    "cancel_all",
    "fail_all",
    "fail_all_after_cancel",
]


def _replay_everything(harness: Harness, future: ScalerFuture) -> None:
    """Every later message or call that must not change a settled future."""
    harness.result(future, "late")
    for kind in CancelConfirmType:
        harness.confirm(future, kind)
    harness.manager.cancel_all()
    harness.manager.fail_all(DisconnectedError("later"))
    future.cancel(timeout=0)


@pytest.mark.parametrize("how", SETTLE_WAYS)
def test_done_callback_fires_exactly_once(harness: Harness, how: str) -> None:
    future = harness.create()
    calls: list[tuple[concurrent.futures.Future[Any], bool]] = []
    future.add_done_callback(lambda f: calls.append((f, f.done())))
    assert calls == []
    _settle(harness, future, how)
    assert calls == [(future, True)]
    _replay_everything(harness, future)
    assert calls == [(future, True)]
    late: list[concurrent.futures.Future[Any]] = []
    future.add_done_callback(late.append)  # added after done: runs at once, once
    assert late == [future]


@pytest.mark.parametrize("how", SETTLE_WAYS)
def test_outcome_never_changes_once_settled(harness: Harness, how: str) -> None:
    future = harness.create()
    _settle(harness, future, how)
    before = (future.cancelled(), None if future.cancelled() else future.exception(timeout=0))
    value = future.result(timeout=0) if before == (False, None) else None
    _replay_everything(harness, future)
    assert (future.cancelled(), None if future.cancelled() else future.exception(timeout=0)) == before
    if before == (False, None):
        assert future.result(timeout=0) == value


def test_callback_exceptions_do_not_break_settling(harness: Harness, caplog: pytest.LogCaptureFixture) -> None:
    future = harness.create()
    later: list[concurrent.futures.Future[Any]] = []

    def broken(_: concurrent.futures.Future[Any]) -> None:
        raise RuntimeError("user callback bug")

    future.add_done_callback(broken)
    future.add_done_callback(later.append)
    harness.result(future, "x")
    assert later == [future]
    assert future.result(timeout=0) == "x"
    assert any("user callback bug" in record.exc_text for record in caplog.records if record.exc_text)


@pytest.mark.parametrize("how", SETTLE_WAYS)
def test_wait_sees_every_way_of_settling(harness: Harness, how: str) -> None:
    future = harness.create()
    _settle(harness, future, how)
    done, not_done = concurrent.futures.wait([future], timeout=0)
    assert done == {future}
    assert not_done == set()


def test_wait_first_completed_is_woken_by_a_cancellation(harness: Harness) -> None:
    futures = [harness.create(bytes([i])) for i in range(3)]
    waited: list[Any] = []
    waiter = threading.Thread(
        target=lambda: waited.append(
            concurrent.futures.wait(futures, timeout=JOIN_SECONDS, return_when=concurrent.futures.FIRST_COMPLETED)
        )
    )
    waiter.start()
    futures[1].cancel(timeout=0)
    harness.confirm(futures[1], CANCELED)
    waiter.join(JOIN_SECONDS)
    ((done, not_done),) = waited
    assert done == {futures[1]}
    assert not_done == {futures[0], futures[2]}


def test_wait_all_completed_with_mixed_outcomes(harness: Harness) -> None:
    futures = [harness.create(bytes([i])) for i in range(4)]
    waited: list[Any] = []
    waiter = threading.Thread(target=lambda: waited.append(concurrent.futures.wait(futures, timeout=JOIN_SECONDS)))
    waiter.start()
    harness.result(futures[0], "ok")
    harness.result(futures[1], "bad", status=TaskStatus.FAILED)
    futures[2].cancel(timeout=0)
    harness.result(futures[2], "discarded")
    futures[3].cancel(timeout=0)
    harness.confirm(futures[3], CANCEL_NOT_FOUND)
    waiter.join(JOIN_SECONDS)
    ((done, not_done),) = waited
    assert done == set(futures)
    assert not_done == set()


def test_as_completed_yields_results_and_cancellations(harness: Harness) -> None:
    futures = [harness.create(bytes([i])) for i in range(4)]
    harness.result(futures[0], "first")
    iterator = concurrent.futures.as_completed(futures, timeout=JOIN_SECONDS)
    assert next(iterator) is futures[0]  # the waiter is installed now; the rest must notify it
    futures[1].cancel(timeout=0)
    harness.confirm(futures[1], CANCELED)
    futures[2].cancel(timeout=0)
    harness.result(futures[2], "discarded")
    harness.manager.fail_all(DisconnectedError("gone"))
    rest = list(iterator)
    assert set(rest) == set(futures[1:])
    assert len(rest) == 3


def test_as_completed_with_already_cancelled_futures(harness: Harness) -> None:
    futures = [harness.create(bytes([i])) for i in range(3)]
    harness.manager.cancel_all()
    assert set(concurrent.futures.as_completed(futures, timeout=0)) == set(futures)


# -- asyncio ----------------------------------------------------------------------------------------


def _deliver_soon(action: Callable[[], None]) -> threading.Thread:
    """Run ``action`` on another thread, as the agent thread would deliver a message."""
    thread = threading.Thread(target=action)
    thread.start()
    return thread


def test_await_returns_the_result(harness: Harness) -> None:
    future = harness.create()

    async def main() -> Any:
        deliverer = _deliver_soon(lambda: harness.result(future, "awaited"))
        try:
            return await future
        finally:
            deliverer.join(JOIN_SECONDS)

    assert asyncio.run(main()) == "awaited"


def test_await_a_finished_future(harness: Harness) -> None:
    future = harness.create()
    harness.result(future, "ready")

    async def main() -> Any:
        return await future

    assert asyncio.run(main()) == "ready"


def test_await_raises_the_remote_exception(harness: Harness) -> None:
    future = harness.create()

    async def main() -> None:
        deliverer = _deliver_soon(lambda: harness.result(future, "boom", status=TaskStatus.FAILED))
        try:
            with pytest.raises(RemoteFailure, match="boom"):
                await future
        finally:
            deliverer.join(JOIN_SECONDS)

    asyncio.run(main())


def test_await_a_cancelled_future_raises_cancelled_error(harness: Harness) -> None:
    future = harness.create()
    future.cancel(timeout=0)

    async def main() -> None:
        deliverer = _deliver_soon(lambda: harness.confirm(future, CANCELED))
        try:
            with pytest.raises(asyncio.CancelledError):
                await future
        finally:
            deliverer.join(JOIN_SECONDS)

    asyncio.run(main())


def test_wrap_future_and_gather(harness: Harness) -> None:
    futures = [harness.create(bytes([i])) for i in range(3)]

    async def main() -> list[Any]:
        wrapped = [asyncio.wrap_future(future) for future in futures]

        def deliver_all() -> None:
            for future in reversed(futures):
                harness.result(future, f"r{future.task_id[0]}")

        deliverer = _deliver_soon(deliver_all)
        try:
            return await asyncio.gather(*wrapped)
        finally:
            deliverer.join(JOIN_SECONDS)

    assert asyncio.run(main()) == ["r0", "r1", "r2"]


def test_cancelling_an_asyncio_awaiter_does_not_block_the_event_loop(harness: Harness) -> None:
    """asyncio cancels the ScalerFuture on the loop's thread: cancel() must not wait there for the scheduler."""
    future = harness.create()
    loop_finished = threading.Event()
    rescued: list[bool] = []

    def rescue() -> None:
        # If the loop is stuck inside cancel(), answer the cancel so that the test can end and report it.
        if not loop_finished.wait(2.0):
            rescued.append(True)
            harness.confirm(future, CANCELED)

    rescuer = threading.Thread(target=rescue)
    rescuer.start()

    async def main() -> None:
        waiter = asyncio.ensure_future(_await(future))
        await asyncio.sleep(0)  # let it start awaiting
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter

    try:
        asyncio.run(main())
    finally:
        loop_finished.set()
        rescuer.join(JOIN_SECONDS)
    assert rescued == [], "the event loop was blocked in ScalerFuture.cancel()"
    assert harness.cancels_sent() == [b"t1"]  # the cancel still reached the scheduler
    harness.confirm(future, CANCELED)  # and its answer settles the future
    assert_cancelled(future)


async def _await(future: ScalerFuture) -> Any:
    return await future


# -- cancel_all and fail_all -----------------------------------------------------------------------


def test_cancel_all_cancels_every_pending_future(harness: Harness) -> None:
    pending = [harness.create(bytes([i])) for i in range(3)]
    finished = harness.create(b"finished")
    harness.result(finished, "kept")
    refused = harness.create(b"refused")
    refused.cancel(timeout=0)
    harness.confirm(refused, CANCEL_FAILED)
    blocked = harness.create(b"blocked")
    canceller = start_blocking_cancel(harness, blocked)

    harness.manager.cancel_all()

    for future in [*pending, refused, blocked]:
        assert_cancelled(future)
    assert canceller.join() is True
    assert finished.result(timeout=0) == "kept"
    assert harness.manager.pending_count() == 0
    assert harness.cancels_sent() == [b"refused", b"blocked"]  # cancel_all itself sends nothing


def test_fail_all_fails_pending_and_cancels_those_with_a_cancel_in_flight(harness: Harness) -> None:
    plain = [harness.create(bytes([i])) for i in range(3)]
    finished = harness.create(b"finished")
    harness.result(finished, "kept")
    timed_out = harness.create(b"timed-out")
    assert timed_out.cancel(timeout=0) is False
    refused = harness.create(b"refused")
    refused.cancel(timeout=0)
    harness.confirm(refused, CANCEL_FAILED)
    blocked = harness.create(b"blocked")
    canceller = start_blocking_cancel(harness, blocked)
    waiter_results: list[BaseException | None] = []
    waiter = threading.Thread(target=lambda: waiter_results.append(plain[0].exception(timeout=JOIN_SECONDS)))
    waiter.start()

    error = DisconnectedError("lost the scheduler")
    harness.manager.fail_all(error)

    for future in [*plain, refused]:
        assert future.done() and not future.cancelled()
        with pytest.raises(DisconnectedError, match="lost the scheduler"):
            future.result(timeout=0)
    assert_cancelled(timed_out)
    assert_cancelled(blocked)
    assert canceller.join() is True
    waiter.join(JOIN_SECONDS)
    assert waiter_results == [error]
    assert finished.result(timeout=0) == "kept"
    assert harness.manager.pending_count() == 0


def test_disconnected_error_is_a_connection_error() -> None:
    assert issubclass(DisconnectedError, ConnectionError)


def test_nothing_is_tracked_after_fail_all_and_new_futures_still_work(harness: Harness) -> None:
    old = harness.create(b"old")
    harness.manager.fail_all(DisconnectedError("gone"))
    new = harness.create(b"new")
    assert harness.manager.pending_count() == 1
    harness.result(new, "fresh")
    assert new.result(timeout=0) == "fresh"
    with pytest.raises(DisconnectedError):
        old.result(timeout=0)


# -- robustness -----------------------------------------------------------------------------------


def test_a_decoder_that_raises_does_not_leave_the_future_pending_forever(harness: Harness) -> None:
    """The future is already untracked when its result is decoded, so a decoder error must still end it."""

    def broken(result: TaskResult) -> tuple[bool, Any]:
        raise ValueError("decoder bug")

    manager = ClientFutureManager(harness.sent.append, broken)
    future = manager.create(b"t1")
    manager.on_task_result(TaskResult(b"t1", TaskStatus.SUCCESS, b"x", 0))  # must not raise on the agent thread
    manager.fail_all(DisconnectedError("gone"))  # would be the only other way out, were it still pending
    assert future.done()
    assert isinstance(future.exception(timeout=0), SerializationError)
    assert manager.pending_count() == 0


def test_concurrent_results_and_cancels_settle_every_future_once(harness: Harness) -> None:
    """Threads race cancel() against results and confirms; every future still ends exactly once."""
    count = 200
    futures = [harness.create(i.to_bytes(2, "big")) for i in range(count)]
    calls = [0] * count

    def count_call(index: int) -> Callable[[concurrent.futures.Future[Any]], None]:
        def callback(_: concurrent.futures.Future[Any]) -> None:
            calls[index] += 1

        return callback

    for index, future in enumerate(futures):
        future.add_done_callback(count_call(index))
    start = threading.Barrier(3)

    def cancel_evens() -> None:
        start.wait()
        for future in futures[::2]:
            future.cancel(timeout=0)

    def deliver_results() -> None:
        start.wait()
        for future in futures:
            harness.result(future, "r")

    def deliver_confirms() -> None:
        start.wait()
        for future in futures[::2]:
            harness.confirm(future, CANCELED)

    threads = [threading.Thread(target=target) for target in (cancel_evens, deliver_results, deliver_confirms)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_SECONDS)
    assert all(future.done() for future in futures)
    assert calls == [1] * count
    for future in futures[1::2]:
        assert future.result(timeout=0) == "r"
    assert harness.manager.pending_count() == 0
