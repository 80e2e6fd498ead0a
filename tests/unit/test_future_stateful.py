"""A hypothesis state machine throwing random interleavings at ``ClientFutureManager``.

The machine plays the user (create futures, ``cancel(timeout=0)``, add callbacks), the scheduler
(queue, assign, complete, answer cancels in the orders ``scheduler/state.py`` can produce them)
and the agent thread (deliver the scheduler's messages, ``cancel_all``, ``fail_all``). A small
model says what every future must look like after each step.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import enum
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from scaler.client.future import ScalerFuture
from scaler.client.future_manager import ClientFutureManager
from scaler.errors import DisconnectedError
from scaler.protocol.messages import CancelConfirmType, Message, TaskCancel, TaskCancelConfirm, TaskResult, TaskStatus


class RemoteFailure(Exception):
    """What the stub decoder returns for a FAILED result."""


class Outcome(enum.Enum):
    PENDING = "pending"
    RESULT = "result"
    EXCEPTION = "exception"
    CANCELLED = "cancelled"


class AtScheduler(enum.Enum):
    QUEUED = "queued"
    ASSIGNED = "assigned"
    CANCELING = "canceling"  # a TaskCancel went to the worker; it answers, or its result comes first
    GONE = "gone"  # finished, cancelled or forgotten: a later TaskCancel gets CANCEL_NOT_FOUND


@dataclasses.dataclass
class Model:
    """What one task should look like, on the client and on the scheduler."""

    future: ScalerFuture
    outcome: Outcome = Outcome.PENDING
    value: Any = None  # the result, or the exception's text
    cancel_in_flight: bool = False  # asked, and neither answered with a refusal nor settled
    cancel_ever_requested: bool = False
    at_scheduler: AtScheduler = AtScheduler.QUEUED
    cancels_to_scheduler: int = 0  # TaskCancel messages not yet handled by the scheduler
    to_client: collections.deque[Message] = dataclasses.field(default_factory=collections.deque)
    delivered_without_cancel: tuple[Outcome, Any] | None = None  # a result that arrived with no cancel asked
    settled_with_cancel_in_flight: bool = False
    callbacks: list[list[bool]] = dataclasses.field(default_factory=list)  # per callback: done() at each call
    first_terminal: tuple[Outcome, Any] | None = None


def decode(result: TaskResult) -> tuple[bool, Any]:
    if result.status is TaskStatus.SUCCESS:
        return True, result.payload.decode()
    return False, RemoteFailure(result.payload.decode())


MAX_PENDING = 4


class FutureMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Message] = []
        self.expected_sent: list[Message] = []
        self.manager = ClientFutureManager(self.sent.append, decode)
        self.tasks: list[Model] = []

    # -- helpers ------------------------------------------------------------------------------

    def _pick(self, candidates: list[Model], index: int) -> Model:
        return candidates[index % len(candidates)]

    def _pending_at_scheduler(self, *states: AtScheduler) -> list[Model]:
        return [task for task in self.tasks if task.at_scheduler in states]

    def _settle_model(self, task: Model, outcome: Outcome, value: Any = None) -> None:
        if task.outcome is Outcome.PENDING:
            task.outcome = outcome
            task.value = value
            task.settled_with_cancel_in_flight = task.cancel_in_flight
            task.cancel_in_flight = False

    # -- the user -----------------------------------------------------------------------------

    # Few futures, so that random steps often hit the same one several times.
    @precondition(lambda self: sum(task.outcome is Outcome.PENDING for task in self.tasks) < MAX_PENDING)
    @rule(assigned=st.booleans())
    def create(self, assigned: bool) -> None:
        task_id = len(self.tasks).to_bytes(4, "big")
        at_scheduler = AtScheduler.ASSIGNED if assigned else AtScheduler.QUEUED
        self.tasks.append(Model(self.manager.create(task_id), at_scheduler=at_scheduler))

    @precondition(lambda self: self.tasks)
    @rule(index=st.integers(0, 15))
    def cancel(self, index: int) -> None:
        task = self._pick(self.tasks, index)
        returned = task.future.cancel(timeout=0)
        if task.outcome is Outcome.PENDING:
            assert returned is False  # no answer can have arrived during a zero timeout
            task.cancel_ever_requested = True
            if not task.cancel_in_flight:
                task.cancel_in_flight = True
                task.cancels_to_scheduler += 1
                self.expected_sent.append(TaskCancel(task.future.task_id))
        else:
            assert returned is (task.outcome is Outcome.CANCELLED)

    @precondition(lambda self: self.tasks)
    @rule(index=st.integers(0, 15))
    def add_callback(self, index: int) -> None:
        task = self._pick(self.tasks, index)
        calls: list[bool] = []
        task.callbacks.append(calls)
        task.future.add_done_callback(lambda future: calls.append(future.done()))

    # -- the scheduler and its workers ----------------------------------------------------------
    # One rule picks a task and one of the moves the scheduler could make for it next, so that
    # the random steps spend their time on the chains that matter (cancel -> refuse -> result...).

    @precondition(lambda self: any(self._scheduler_moves(task) for task in self.tasks))
    @rule(index=st.integers(0, 15), choice=st.integers(0, 15))
    def scheduler_step(self, index: int, choice: int) -> None:
        task = self._pick([task for task in self.tasks if self._scheduler_moves(task)], index)
        moves = self._scheduler_moves(task)
        moves[choice % len(moves)](task)

    def _scheduler_moves(self, task: Model) -> list[Callable[[Model], None]]:
        moves: list[Callable[[Model], None]] = []
        if task.cancels_to_scheduler:
            moves += [self._handle_cancel] * 3
        if task.at_scheduler is AtScheduler.QUEUED:
            moves += [self._assign]
        if task.at_scheduler in (AtScheduler.ASSIGNED, AtScheduler.CANCELING):
            moves += [self._complete_ok, self._complete_failed]
        if task.at_scheduler is AtScheduler.CANCELING:
            moves += [self._worker_canceled, self._worker_cancel_failed, self._worker_cancel_failed]
        if task.at_scheduler is not AtScheduler.GONE and len(moves) > 1:
            moves += [self._drop]  # rare: only as one move among several
        return moves

    def _assign(self, task: Model) -> None:
        task.at_scheduler = AtScheduler.ASSIGNED

    def _complete_ok(self, task: Model) -> None:
        self._complete(task, TaskStatus.SUCCESS)

    def _complete_failed(self, task: Model) -> None:
        self._complete(task, TaskStatus.FAILED)

    def _complete(self, task: Model, status: TaskStatus) -> None:
        """The worker's result reaches the scheduler, which forwards it (even while CANCELING)."""
        payload = f"value-{task.future.task_id.hex()}".encode()
        task.to_client.append(TaskResult(task.future.task_id, status, payload, 0))
        task.at_scheduler = AtScheduler.GONE

    def _handle_cancel(self, task: Model) -> None:
        task.cancels_to_scheduler -= 1
        task_id = task.future.task_id
        if task.at_scheduler is AtScheduler.GONE:
            task.to_client.append(TaskCancelConfirm(task_id, CancelConfirmType.CANCEL_NOT_FOUND))
        elif task.at_scheduler is AtScheduler.QUEUED:
            task.to_client.append(TaskCancelConfirm(task_id, CancelConfirmType.CANCELED))
            task.at_scheduler = AtScheduler.GONE
        elif task.at_scheduler is AtScheduler.ASSIGNED:
            task.at_scheduler = AtScheduler.CANCELING
        # CANCELING: the worker's answer to the earlier request serves this one too

    def _worker_canceled(self, task: Model) -> None:
        # also what the scheduler says when the worker dies while the task is CANCELING
        task.to_client.append(TaskCancelConfirm(task.future.task_id, CancelConfirmType.CANCELED))
        task.at_scheduler = AtScheduler.GONE

    def _worker_cancel_failed(self, task: Model) -> None:
        task.to_client.append(TaskCancelConfirm(task.future.task_id, CancelConfirmType.CANCEL_FAILED))
        task.at_scheduler = AtScheduler.ASSIGNED

    def _drop(self, task: Model) -> None:
        """The scheduler forgets a task without a word (it took the client for dead): cancels find nothing."""
        task.at_scheduler = AtScheduler.GONE

    # -- the agent thread -----------------------------------------------------------------------

    @precondition(lambda self: any(task.to_client for task in self.tasks))
    @rule(index=st.integers(0, 15))
    def deliver(self, index: int) -> None:
        task = self._pick([task for task in self.tasks if task.to_client], index)
        message = task.to_client.popleft()
        kind = message.status.name if isinstance(message, TaskResult) else message.confirm.name  # type: ignore[attr-defined]
        event(f"deliver {kind} to a {task.outcome.value} future, cancel in flight: {task.cancel_in_flight}")
        if isinstance(message, TaskResult):
            self.manager.on_task_result(message)
            if task.cancel_in_flight:
                self._settle_model(task, Outcome.CANCELLED)
            else:
                outcome = Outcome.RESULT if message.status is TaskStatus.SUCCESS else Outcome.EXCEPTION
                if task.outcome is Outcome.PENDING:
                    task.delivered_without_cancel = (outcome, message.payload.decode())
                self._settle_model(task, outcome, message.payload.decode())
        else:
            assert isinstance(message, TaskCancelConfirm)
            self.manager.on_task_cancel_confirm(message)
            if message.confirm is CancelConfirmType.CANCEL_FAILED:
                task.cancel_in_flight = False
            else:
                self._settle_model(task, Outcome.CANCELLED)

    # The client leaves (cancel_all) or loses its scheduler (fail_all): rare, as either ends everything.
    @rule(chance=st.integers(0, 49), lost=st.booleans())
    def client_ends(self, chance: int, lost: bool) -> None:
        if chance:
            return
        if not lost:
            self.manager.cancel_all()
            for task in self.tasks:
                self._settle_model(task, Outcome.CANCELLED)
            return
        self.manager.fail_all(DisconnectedError("lost the scheduler"))
        for task in self.tasks:
            if task.cancel_in_flight:
                self._settle_model(task, Outcome.CANCELLED)
            else:
                self._settle_model(task, Outcome.EXCEPTION, "lost the scheduler")

    # -- invariants -----------------------------------------------------------------------------

    @invariant()
    def futures_match_the_model(self) -> None:
        for task in self.tasks:
            assert observe(task.future) == (task.outcome, task.value)

    @invariant()
    def terminal_outcome_never_changes(self) -> None:
        for task in self.tasks:
            seen = observe(task.future)
            if seen[0] is Outcome.PENDING:
                assert task.first_terminal is None
            elif task.first_terminal is None:
                task.first_terminal = seen
            else:
                assert seen == task.first_terminal

    @invariant()
    def callbacks_fire_once_when_done_and_never_before(self) -> None:
        for task in self.tasks:
            expected = [True] if task.future.done() else []
            for calls in task.callbacks:
                assert calls == expected

    @invariant()
    def a_result_delivered_with_no_cancel_asked_is_the_outcome(self) -> None:
        for task in self.tasks:
            if task.delivered_without_cancel is not None:
                assert observe(task.future) == task.delivered_without_cancel

    @invariant()
    def a_cancel_asked_and_not_refused_never_ends_with_a_result(self) -> None:
        for task in self.tasks:
            if task.cancel_in_flight:
                assert not task.future.done()
            if task.settled_with_cancel_in_flight:
                assert task.future.cancelled()

    @invariant()
    def wait_sees_exactly_the_done_futures(self) -> None:
        futures = [task.future for task in self.tasks]
        done, _ = concurrent.futures.wait(futures, timeout=0)
        assert done == {future for future in futures if future.done()}

    @invariant()
    def exactly_one_task_cancel_per_request(self) -> None:
        assert self.sent == self.expected_sent

    @invariant()
    def manager_and_futures_are_valid(self) -> None:
        self.manager.validate()
        for task in self.tasks:
            task.future._validate()

    @invariant()
    def manager_tracks_exactly_the_pending_futures(self) -> None:
        assert self.manager.pending_count() == sum(task.outcome is Outcome.PENDING for task in self.tasks)


def observe(future: ScalerFuture) -> tuple[Outcome, Any]:
    """The future's state, read only through the public ``concurrent.futures`` API."""
    if not future.done():
        return Outcome.PENDING, None
    if future.cancelled():
        try:
            future.result(timeout=0)
        except concurrent.futures.CancelledError:
            return Outcome.CANCELLED, None
        raise AssertionError("a cancelled future returned a result")
    error = future.exception(timeout=0)
    if error is None:
        return Outcome.RESULT, future.result(timeout=0)
    assert isinstance(error, (RemoteFailure, DisconnectedError))
    return Outcome.EXCEPTION, str(error)


FutureMachine.TestCase.settings = settings(
    max_examples=400,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestFutureMachine = FutureMachine.TestCase
