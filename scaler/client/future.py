"""``ScalerFuture``: a real ``concurrent.futures.Future`` whose ``cancel()`` asks the scheduler.

The future's outcome is set only by ``ClientFutureManager`` (through ``_settle_*``), always
through the public hooks of ``concurrent.futures.Future`` and with callbacks run outside locks.
Its one piece of private access, the base class's ``_condition``, is used in this module only.

``cancel(timeout=None)``:

- cancelled already → ``True``; finished → ``False`` and nothing is sent;
- otherwise one ``TaskCancel`` is sent (a second call while it is in flight sends nothing) and
  the call waits for the scheduler's answer, a result, or ``timeout``:
  ``canceled``/``cancel_not_found`` → cancelled, ``True``; ``cancel_failed`` → stays pending,
  ``False``; a result arriving after the request → discarded and cancelled, ``True``;
  timeout → ``False``, while a late answer still cancels the future.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Generator
from typing import Any


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class ScalerFuture(concurrent.futures.Future[Any]):
    """The handle of one submitted task; see the module docstring for the cancel contract."""

    def __init__(
        self, task_id: bytes, request_cancel: Callable[[ScalerFuture], None], cancel_would_block: Callable[[], bool]
    ) -> None:
        super().__init__()
        self._task_id = task_id
        self._request_cancel = request_cancel
        self._cancel_would_block = cancel_would_block
        self._cancel_in_flight = False
        self._settling = False  # the manager has taken its outcome; cancel can no longer win

    @property
    def task_id(self) -> bytes:
        """The task's id, as it appears in logs on every process."""
        return self._task_id

    def cancel(self, timeout: float | None = None) -> bool:
        """Cancel the task on the cluster; see the module docstring for every outcome."""
        with self._condition:
            if self.cancelled():
                return True
            if self.done():
                return False
            send = not self._cancel_in_flight and not self._settling
            self._cancel_in_flight = True
        if send:
            self._request_cancel(self)
        if self._cancel_would_block() or _on_event_loop():
            # On the thread that delivers answers, waiting would deadlock; on an event loop (an
            # awaiting task was cancelled) it would stall every coroutine. The answer still settles it.
            timeout = 0
        with self._condition:
            self._condition.wait_for(lambda: self.done() or not self._cancel_in_flight, timeout)
            return self.cancelled()

    def __await__(self) -> Generator[Any, None, Any]:
        """Make ``await future`` work in asyncio code."""
        return asyncio.wrap_future(self).__await__()

    # -- used by ClientFutureManager only ------------------------------------------------------

    def _take_for_settling(self) -> bool | None:
        """Claim the outcome: return whether a cancel was requested, or None if already done."""
        with self._condition:
            if self.done() or self._settling:
                return None
            self._settling = True
            return self._cancel_in_flight

    def _settle_cancelled(self) -> None:
        concurrent.futures.Future.cancel(self)
        self.set_running_or_notify_cancel()  # wakes wait() and as_completed()

    def _cancel_refused(self) -> None:
        with self._condition:
            self._cancel_in_flight = False
            self._condition.notify_all()
