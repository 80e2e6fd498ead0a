"""``ClientFutureManager``: the one place where scheduler answers become future outcomes.

It maps task ids to pending futures. ``on_task_result``, ``on_task_cancel_confirm`` and
``on_object_response`` take the scheduler's messages; ``cancel_all`` and ``fail_all`` end every
future still waiting when the client leaves or loses its scheduler. It does no I/O itself:
requests go out through the ``send`` callable it is given, and results are decoded by the
``decode_result`` callable.

Data flow of a big result the scheduler keeps::

    TaskResult(result_object_id) -> future done, value not here (weakly held; freed if dropped)
    someone needs the value      -> ObjectRequest([id])
    ObjectResponse               -> decode_result -> set_result / set_exception
                                 -> ObjectInstruction(DELETE, [id])

Once one result was kept, a future someone waits on while its task is still pending sends
``TaskResultWanted([task id])``: its big result then comes straight in the ``TaskResult``, not kept.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from scaler.client.future import ScalerFuture
from scaler.client.future_stage import VALUE_ON_SCHEDULER, FutureStage, FutureStateError
from scaler.errors import DisconnectedError, SerializationError, TaskNotFoundError
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
)

logger = logging.getLogger(__name__)

_TRACKED = frozenset({FutureStage.SUBMITTED, FutureStage.CANCELING})  # a claimed future is never tracked

DecodeResult = Callable[[TaskResult], tuple[bool, Any]]  # (ok, value or exception)
OnFinish = Callable[[], None]


class ClientFutureManager:
    """Owns ``task_id -> ScalerFuture`` for one client."""

    def __init__(
        self,
        send: Callable[[Message], None],
        decode_result: DecodeResult,
        on_delivery_thread: Callable[[], bool] = lambda: False,
    ) -> None:
        self._send = send
        self._decode_result = decode_result
        self.on_delivery_thread = on_delivery_thread  # a wait there for an answer would never end
        self._futures: dict[bytes, ScalerFuture] = {}
        self._on_finish: dict[bytes, OnFinish] = {}  # task id -> called once the scheduler is done with it
        # Results kept on the scheduler, by object id: weakly until someone asks, so a dropped
        # future frees its result; strongly while the fetch is in flight.
        self._kept: weakref.WeakValueDictionary[bytes, ScalerFuture] = weakref.WeakValueDictionary()
        self._fetching: dict[bytes, ScalerFuture] = {}
        self._kept_seen = False  # a result of this client's was kept: hint at awaited ones (request_result)
        self._lock = threading.Lock()

    def create(self, task_id: bytes, profiling: bool = False, on_finish: OnFinish | None = None) -> ScalerFuture:
        """Make and track the future of a task about to be sent.

        ``on_finish`` is called once the task no longer runs on the cluster (its result or
        cancel confirmation arrived, or the client left); it must not block.
        """
        future = ScalerFuture(task_id, self, profiling)
        with self._lock:
            self._futures[task_id] = future
            if on_finish is not None:
                self._on_finish[task_id] = on_finish
        return future

    def forget(self, task_id: bytes) -> None:
        """Stop tracking a task that could not be sent."""
        with self._lock:
            self._futures.pop(task_id, None)
            self._on_finish.pop(task_id, None)

    def pending_count(self) -> int:
        """How many futures still wait for an answer."""
        return len(self._futures)

    def kept_count(self) -> int:
        """How many results are kept on the scheduler, not yet fetched, for live futures."""
        return len(self._kept)

    delayed_count = kept_count  # the name it had before results were called "kept" everywhere

    def on_task_result(self, result: TaskResult) -> None:
        """Settle a future with its result, or cancel it if a cancel was requested first."""
        future = self._pop(result.task_id)
        object_id = result.result_object_id
        if future is None:
            logger.debug("task %s: result for a future no longer pending", result.task_id.hex())
            self._free_result(object_id)
            return
        cancel_requested = future._claim()
        if cancel_requested is None:
            self._free_result(object_id)
            return
        if cancel_requested:
            logger.debug("task %s: result arrived after cancel was requested; discarded", result.task_id.hex())
            self._free_result(object_id)
            future._settle_cancelled()
            return
        future._set_profile(result)
        if object_id:
            self._kept_seen = True
            release = weakref.finalize(future, self._free_result, object_id)
            release.atexit = False
            with self._lock:
                self._kept[object_id] = future
            future._keep(result, release)
            return
        future._settle(*self._decode(result))

    def on_object_response(self, response: ObjectResponse) -> None:
        """Complete the futures whose kept results were fetched, then free those results."""
        freed: list[bytes] = []
        for object_id, payload, found in zip(response.object_ids, response.payloads, response.found):  # noqa: B905
            with self._lock:
                future = self._fetching.pop(object_id, None)
                self._kept.pop(object_id, None)
            if future is None:
                continue
            result = future._kept_result()
            if result is None:  # only a future that is kept is ever fetched
                raise FutureStateError(f"object {object_id.hex()}: fetched for a future that keeps nothing")
            if found:
                freed.append(object_id)
                ok, value = self._decode(dataclasses.replace(result, payload=payload, result_object_id=b""))
            else:
                ok, value = (
                    False,
                    TaskNotFoundError(
                        f"task {result.task_id.hex()}: the scheduler no longer holds its result "
                        f"(was client.clear() called before it was read?)"
                    ),
                )
            future._finish_fetch(ok, value)
        if freed:
            self._send(ObjectInstruction(ObjectInstructionType.DELETE, freed, []))

    def on_task_cancel_confirm(self, confirm: TaskCancelConfirm) -> None:
        """Apply the scheduler's answer to a cancel request."""
        task_id = confirm.task_id
        if confirm.confirm is CancelConfirmType.CANCEL_FAILED:
            with self._lock:
                future = self._futures.get(task_id)
            if future is not None:
                logger.info("task %s: the scheduler could not cancel it; it will complete", task_id.hex())
                future._cancel_refused()
            return
        if confirm.confirm is CancelConfirmType.CANCEL_NOT_FOUND:
            logger.debug("task %s: cancel found nothing to cancel (it had already finished)", task_id.hex())
        future = self._pop(task_id)
        if future is not None and future._claim() is not None:
            future._settle_cancelled()

    def cancel_all(self) -> None:
        """End every pending future as cancelled (the client is leaving).

        A result kept on the scheduler and not fetched yet is lost with the client: its future
        fails with ``DisconnectedError``.
        """
        for future in self._take_all():
            if future._claim() is not None:
                future._settle_cancelled()
        self._fail_kept(DisconnectedError("the client disconnected before this task's result was fetched"))

    def fail_all(self, error: BaseException) -> None:
        """End every pending future with ``error`` (the scheduler is gone).

        A future whose cancel was already requested ends cancelled instead: its caller asked
        for no result, and none can come any more.
        """
        for future in self._take_all():
            cancel_requested = future._claim()
            if cancel_requested:
                future._settle_cancelled()
            elif cancel_requested is not None:
                future._settle(False, error)
        self._fail_kept(error)

    def validate(self) -> None:
        """Raise ``FutureStateError`` if a tracked future is where it should not be (for tests)."""
        with self._lock:
            pending = dict(self._futures)
            finish_hooks = set(self._on_finish)
            kept = dict(self._kept)
            fetching = dict(self._fetching)
        problems = []
        if not finish_hooks <= set(pending):
            problems.append(f"finish hooks for tasks no longer pending: {sorted(finish_hooks - set(pending))}")
        problems += [
            f"pending task {t.hex()} is {f._stage.value}" for t, f in pending.items() if f._stage not in _TRACKED
        ]
        problems += [
            f"kept result {o.hex()} is {f._stage.value}" for o, f in kept.items() if f._stage not in VALUE_ON_SCHEDULER
        ]
        problems += [
            f"fetched result {o.hex()} is {f._stage.value}"
            for o, f in fetching.items()
            if f._stage is not FutureStage.FETCHING
        ]
        if problems:
            raise FutureStateError("; ".join(problems))
        for future in [*pending.values(), *kept.values(), *fetching.values()]:
            future._validate()

    def _fail_kept(self, error: BaseException) -> None:
        with self._lock:
            futures = list(self._kept.values()) + list(self._fetching.values())
            self._kept.clear()
            self._fetching.clear()
        for future in set(futures):
            future._finish_fetch(False, error)

    def _decode(self, result: TaskResult) -> tuple[bool, Any]:
        try:
            return self._decode_result(result)
        except Exception as error:  # the future must end whatever the decoder does
            return False, SerializationError(f"task {result.task_id.hex()}: its result cannot be read: {error}")

    def _pop(self, task_id: bytes) -> ScalerFuture | None:
        with self._lock:
            future = self._futures.pop(task_id, None)
            on_finish = self._on_finish.pop(task_id, None)
        if on_finish is not None:
            on_finish()
        return future

    def _take_all(self) -> list[ScalerFuture]:
        with self._lock:
            futures = list(self._futures.values())
            on_finish = list(self._on_finish.values())
            self._futures.clear()
            self._on_finish.clear()
        for callback in on_finish:
            callback()
        return futures

    # -- asked by the futures ------------------------------------------------------------------

    def request_cancel(self, future: ScalerFuture) -> None:
        """Send the one ``TaskCancel`` of a future whose cancel was just requested."""
        self._send(TaskCancel(future.task_id))

    def request_result(self, future: ScalerFuture) -> None:
        """Someone waits for a pending future: ask that its result, if big, be sent, not kept.

        Only once this client has had a result kept: a client whose results are all small never
        sends the hint, which would cost it and the scheduler a message per task for nothing.
        """
        if self._kept_seen:
            self._send(TaskResultWanted([future.task_id]))

    def request_fetch(self, future: ScalerFuture) -> None:
        """Ask the scheduler for a kept result that someone now needs (once per future)."""
        result = future._kept_result()
        if result is None:
            return
        object_id = result.result_object_id
        with self._lock:
            if object_id not in self._kept:  # lost with the client; _fail_kept settles it
                return
            self._fetching[object_id] = future
        self._send(ObjectRequest([object_id]))

    def _free_result(self, object_id: bytes) -> None:
        # Also runs from weakref.finalize, on whatever thread drops the future: take no lock.
        if object_id:
            self._send(ObjectInstruction(ObjectInstructionType.DELETE, [object_id], []))
