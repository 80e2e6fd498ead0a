"""The future's transition table, and ``validate()`` catching a future whose parts disagree."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from scaler.client.future_manager import ClientFutureManager
from scaler.client.future_stage import TRANSITIONS, FutureEvent, FutureStage, FutureStateError, next_stage
from scaler.protocol.messages import TaskResult, TaskStatus


def decode(result: TaskResult) -> tuple[bool, Any]:
    return True, result.payload.decode()


def test_every_outcome_passes_through_claim_and_settled_is_final() -> None:
    into_settling = {stage for (stage, event), after in TRANSITIONS.items() if after is FutureStage.SETTLING}
    assert into_settling == {FutureStage.SUBMITTED, FutureStage.CANCELING}
    assert all(event is FutureEvent.CLAIM for (_, event), after in TRANSITIONS.items() if after is FutureStage.SETTLING)
    assert not any(stage is FutureStage.SETTLED for stage, _ in TRANSITIONS)
    assert all(event is FutureEvent.SETTLE for (_, event), after in TRANSITIONS.items() if after is FutureStage.SETTLED)


@pytest.mark.parametrize(("stage", "event"), list(itertools.product(FutureStage, FutureEvent)))
def test_a_move_outside_the_table_raises(stage: FutureStage, event: FutureEvent) -> None:
    if (stage, event) in TRANSITIONS:
        assert next_stage(stage, event, b"t") is TRANSITIONS[stage, event]
    else:
        with pytest.raises(FutureStateError, match=f"cannot {event.value} while {stage.value}"):
            next_stage(stage, event, b"t")


def test_an_illegal_move_leaves_the_future_as_it_was() -> None:
    manager = ClientFutureManager(lambda message: None, decode)
    future = manager.create(b"t1")
    manager.on_task_result(TaskResult(b"t1", TaskStatus.SUCCESS, b"v", 0))
    assert future._claim() is None  # settled: nothing left to claim
    with pytest.raises(FutureStateError, match="cannot settle while settled"):
        future._settle(True, "again")
    assert future._stage is FutureStage.SETTLED
    assert future.result(timeout=0) == "v"
    manager.validate()


def test_validate_names_a_broken_future() -> None:
    manager = ClientFutureManager(lambda message: None, decode)
    future = manager.create(b"t1")
    manager.validate()
    future._stage = FutureStage.SETTLED  # as a bug would leave it: settled with no outcome
    with pytest.raises(FutureStateError, match="pending task 7431 is settled"):
        manager.validate()
