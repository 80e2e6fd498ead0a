"""A hypothesis state machine for results kept on the scheduler: fetched once when wanted, freed once.

The machine plays the user (callbacks, ``wait(timeout=0)``, ``result(timeout=0)``, cancels), the
scheduler (inline or kept results, answers to ``ObjectRequest``) and the client leaving. After
every step it checks the manager's and the futures' ``validate()`` and what went on the wire.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from scaler.client.future import ScalerFuture
from scaler.client.future_manager import ClientFutureManager
from scaler.errors import DisconnectedError
from scaler.protocol.messages import (
    Message,
    ObjectInstruction,
    ObjectInstructionType,
    ObjectRequest,
    ObjectResponse,
    TaskResult,
    TaskStatus,
)


def decode(result: TaskResult) -> tuple[bool, Any]:
    return True, result.payload.decode()


@dataclasses.dataclass
class Model:
    future: ScalerFuture
    answered: bool = False  # the scheduler sent its result
    kept: bool = False  # ... and kept it
    wanted: bool = False  # someone asked for the value (callback, wait, result)
    responded: bool = False  # the scheduler answered the fetch
    client_left: bool = False
    callbacks: list[list[bool]] = dataclasses.field(default_factory=list)


class KeptResultMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Message] = []
        self.manager = ClientFutureManager(self.sent.append, decode)
        self.tasks: list[Model] = []

    def _pick(self, candidates: list[Model], index: int) -> Model:
        return candidates[index % len(candidates)]

    def _requested(self) -> collections.Counter[bytes]:
        return collections.Counter(i for m in self.sent if isinstance(m, ObjectRequest) for i in m.object_ids)

    def _deleted(self) -> collections.Counter[bytes]:
        return collections.Counter(
            i
            for m in self.sent
            if isinstance(m, ObjectInstruction) and m.kind is ObjectInstructionType.DELETE
            for i in m.object_ids
        )

    @precondition(lambda self: len(self.tasks) < 6)
    @rule()
    def create(self) -> None:
        self.tasks.append(Model(self.manager.create(len(self.tasks).to_bytes(4, "big"))))

    @precondition(lambda self: any(not task.answered for task in self.tasks))
    @rule(index=st.integers(0, 15), kept=st.booleans())
    def result(self, index: int, kept: bool) -> None:
        task = self._pick([task for task in self.tasks if not task.answered], index)
        task_id = task.future.task_id
        payload = b"" if kept else b"inline"
        self.manager.on_task_result(
            TaskResult(task_id, TaskStatus.SUCCESS, payload, 0, result_object_id=task_id if kept else b"")
        )
        task.answered = True
        task.kept = kept and not task.client_left and not task.future.cancelled()

    @precondition(lambda self: self.tasks)
    @rule(index=st.integers(0, 15), how=st.sampled_from(["callback", "wait", "result"]))
    def want(self, index: int, how: str) -> None:
        task = self._pick(self.tasks, index)
        # A wait that times out takes its waiter back: it wants only a value that is kept already.
        task.wanted = task.wanted or how != "wait" or task.kept
        future = task.future
        if how == "callback":
            calls: list[bool] = []
            task.callbacks.append(calls)
            future.add_done_callback(lambda f: calls.append(concurrent.futures.Future.done(f)))
        elif how == "wait":
            concurrent.futures.wait([future], timeout=0)
        else:
            with contextlib.suppress(Exception):  # not there yet, cancelled, or failed: the invariants judge
                future.result(timeout=0)

    @precondition(lambda self: any(self._awaiting_response(task) for task in self.tasks))
    @rule(index=st.integers(0, 15), found=st.booleans())
    def respond(self, index: int, found: bool) -> None:
        task = self._pick([task for task in self.tasks if self._awaiting_response(task)], index)
        task_id = task.future.task_id
        self.manager.on_object_response(ObjectResponse([task_id], [b"kept" if found else b""], [found]))
        task.responded = True

    def _awaiting_response(self, task: Model) -> bool:
        return self._requested()[task.future.task_id] > 0 and not task.responded

    @precondition(lambda self: self.tasks)
    @rule(index=st.integers(0, 15))
    def cancel(self, index: int) -> None:
        self._pick(self.tasks, index).future.cancel(timeout=0)

    @rule(chance=st.integers(0, 29), lost=st.booleans())
    def client_ends(self, chance: int, lost: bool) -> None:
        if chance:
            return
        if lost:
            self.manager.fail_all(DisconnectedError("lost"))
        else:
            self.manager.cancel_all()
        for task in self.tasks:
            task.client_left = True

    @invariant()
    def valid(self) -> None:
        self.manager.validate()
        for task in self.tasks:
            task.future._validate()

    @invariant()
    def each_kept_result_is_requested_at_most_once_and_only_when_wanted(self) -> None:
        requested = self._requested()
        for task in self.tasks:
            count = requested[task.future.task_id]
            assert count <= 1
            if count:
                assert task.kept and task.wanted

    @invariant()
    def a_wanted_kept_result_is_fetched_unless_the_client_left(self) -> None:
        requested = self._requested()
        for task in self.tasks:
            if task.kept and task.wanted and not task.client_left:
                assert requested[task.future.task_id] == 1

    @invariant()
    def each_result_is_freed_at_most_once(self) -> None:
        assert all(count == 1 for count in self._deleted().values())

    @invariant()
    def a_found_fetch_delivers_the_value(self) -> None:
        for task in self.tasks:
            if task.responded and concurrent.futures.Future.done(task.future) and not task.future.cancelled():
                error = task.future.exception(timeout=0)
                if error is None:
                    assert task.future.result(timeout=0) == "kept"

    @invariant()
    def callbacks_fire_once_with_the_value_there(self) -> None:
        for task in self.tasks:
            settled = concurrent.futures.Future.done(task.future)
            for calls in task.callbacks:
                assert calls == ([True] if settled else [])


KeptResultMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestKeptResultMachine = KeptResultMachine.TestCase
