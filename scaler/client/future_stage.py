"""The stages of a ``ScalerFuture`` on the client, and the one table of their legal moves.

Beside the base ``concurrent.futures.Future`` state (pending, cancelled, finished), a
``ScalerFuture`` knows where its task's answer stands::

    SUBMITTED ──cancel──▶ CANCELING ──refuse──▶ SUBMITTED
        │                     │
        └──────claim──────────┴──▶ SETTLING ──settle──▶ SETTLED
                                      │
                                      └─keep─▶ KEPT ──fetch──▶ FETCHING ──settle──▶ SETTLED
                                                 └─────────settle (lost)──────────▶ SETTLED

Every outcome passes through ``claim``: the manager takes it under the future's lock, so a result
and a cancel confirmation that race cannot both win, and ``settle`` happens once. ``KEPT`` and
``FETCHING`` are ``done()`` although the base future is still pending (the value waits on the
scheduler). Pure: no locks, no I/O; ``ScalerFuture`` applies the moves under its condition.
"""

from __future__ import annotations

import enum


class FutureStateError(RuntimeError):
    """A future was moved illegally, or its parts disagree: a bug in scaler, never the user's."""


class FutureStage(enum.Enum):
    """Where a task's answer stands, as its future sees it."""

    SUBMITTED = "submitted"  # sent; no answer yet, no cancel asked (or the last one was refused)
    CANCELING = "canceling"  # a TaskCancel is in flight
    SETTLING = "settling"  # the manager has claimed the outcome; a cancel can no longer win
    KEPT = "kept"  # done; the scheduler keeps the result until someone needs it
    FETCHING = "fetching"  # done; an ObjectRequest for the kept result is in flight
    SETTLED = "settled"  # the base future holds the outcome: a value, an exception, or cancelled


class FutureEvent(enum.Enum):
    """What can happen to a future, named for the transition table."""

    CANCEL = "request a cancel"
    REFUSE = "have its cancel refused"
    CLAIM = "have its outcome claimed"
    KEEP = "have its result kept on the scheduler"
    FETCH = "fetch its kept result"
    SETTLE = "settle"


_S = FutureStage
_E = FutureEvent

TRANSITIONS: dict[tuple[FutureStage, FutureEvent], FutureStage] = {
    (_S.SUBMITTED, _E.CANCEL): _S.CANCELING,
    (_S.CANCELING, _E.REFUSE): _S.SUBMITTED,
    (_S.SUBMITTED, _E.CLAIM): _S.SETTLING,
    (_S.CANCELING, _E.CLAIM): _S.SETTLING,
    (_S.SETTLING, _E.SETTLE): _S.SETTLED,
    (_S.SETTLING, _E.KEEP): _S.KEPT,
    (_S.KEPT, _E.FETCH): _S.FETCHING,
    (_S.KEPT, _E.SETTLE): _S.SETTLED,  # lost with the client before anyone asked for it
    (_S.FETCHING, _E.SETTLE): _S.SETTLED,
}

AWAITING_ANSWER = frozenset({_S.SUBMITTED, _S.CANCELING, _S.SETTLING})  # the base future is pending
VALUE_ON_SCHEDULER = frozenset({_S.KEPT, _S.FETCHING})  # done(), the base future pending


def next_stage(stage: FutureStage, event: FutureEvent, task_id: bytes) -> FutureStage:
    """The stage after ``event``; ``FutureStateError`` if the table has no such move."""
    after = TRANSITIONS.get((stage, event))
    if after is None:
        raise FutureStateError(f"task {task_id.hex()}: a future cannot {event.value} while {stage.value}")
    return after
