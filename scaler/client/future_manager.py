"""``ClientFutureManager``: the one place where scheduler answers become future outcomes.

It maps task ids to pending futures. ``on_task_result`` and ``on_task_cancel_confirm`` take the
scheduler's messages; ``cancel_all`` and ``fail_all`` end every pending future when the client
leaves or loses its scheduler. It does no I/O itself: cancel requests go out through the
``send`` callable it is given, and results are decoded by the ``decode_result`` callable.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from scaler.client.future import ScalerFuture
from scaler.errors import SerializationError
from scaler.protocol.messages import CancelConfirmType, Message, TaskCancel, TaskCancelConfirm, TaskResult

logger = logging.getLogger(__name__)

DecodeResult = Callable[[TaskResult], tuple[bool, Any]]  # (ok, value or exception)


class ClientFutureManager:
    """Owns ``task_id -> ScalerFuture`` for one client."""

    def __init__(
        self,
        send: Callable[[Message], None],
        decode_result: DecodeResult,
        cancel_would_block: Callable[[], bool] = lambda: False,
    ) -> None:
        self._send = send
        self._decode_result = decode_result
        self._cancel_would_block = cancel_would_block
        self._futures: dict[bytes, ScalerFuture] = {}
        self._lock = threading.Lock()

    def create(self, task_id: bytes) -> ScalerFuture:
        """Make and track the future of a task about to be sent."""
        future = ScalerFuture(task_id, self._request_cancel, self._cancel_would_block)
        with self._lock:
            self._futures[task_id] = future
        return future

    def forget(self, task_id: bytes) -> None:
        """Stop tracking a task that could not be sent."""
        with self._lock:
            self._futures.pop(task_id, None)

    def pending_count(self) -> int:
        """How many futures still wait for an answer."""
        return len(self._futures)

    def on_task_result(self, result: TaskResult) -> None:
        """Settle a future with its result, or cancel it if a cancel was requested first."""
        with self._lock:
            future = self._futures.pop(result.task_id, None)
        if future is None:
            logger.debug("task %s: result for a future no longer pending", result.task_id.hex())
            return
        cancel_requested = future._take_for_settling()
        if cancel_requested is None:
            return
        if cancel_requested:
            logger.debug("task %s: result arrived after cancel was requested; discarded", result.task_id.hex())
            future._settle_cancelled()
            return
        try:
            ok, value = self._decode_result(result)
        except Exception as error:  # the future must end whatever the decoder does
            ok, value = False, SerializationError(f"task {result.task_id.hex()}: its result cannot be read: {error}")
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

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
        with self._lock:
            future = self._futures.pop(task_id, None)
        if future is not None and future._take_for_settling() is not None:
            future._settle_cancelled()

    def cancel_all(self) -> None:
        """End every pending future as cancelled (the client is leaving)."""
        for future in self._take_all():
            if future._take_for_settling() is not None:
                future._settle_cancelled()

    def fail_all(self, error: BaseException) -> None:
        """End every pending future with ``error`` (the scheduler is gone).

        A future whose cancel was already requested ends cancelled instead: its caller asked
        for no result, and none can come any more.
        """
        for future in self._take_all():
            cancel_requested = future._take_for_settling()
            if cancel_requested:
                future._settle_cancelled()
            elif cancel_requested is not None:
                future.set_exception(error)

    def _take_all(self) -> list[ScalerFuture]:
        with self._lock:
            futures = list(self._futures.values())
            self._futures.clear()
        return futures

    def _request_cancel(self, future: ScalerFuture) -> None:
        self._send(TaskCancel(future.task_id))
