"""``Client.status()``'s bookkeeping: requests in flight, and the snapshots that answer them.

The caller's thread opens a request (a fresh ``request_id``), sends ``StatusRequest`` and waits;
the agent thread hands each ``StatusSnapshot`` it receives to ``answer``, which wakes the caller
holding that id. A snapshot nobody waits for any more (its caller timed out) is dropped.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

from scaler.errors import DisconnectedError
from scaler.protocol.messages import StatusSnapshot

_POLL_SECONDS = 0.1  # how often a waiting caller checks whether the scheduler was lost meanwhile


class _Pending:
    __slots__ = ("answered", "snapshot")

    def __init__(self) -> None:
        self.answered = threading.Event()
        self.snapshot: StatusSnapshot | None = None


class StatusRequests:
    """Status requests in flight for one client (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}

    def open(self) -> int:
        """A new request id, whose answer ``wait`` can then wait for."""
        with self._lock:
            request_id = next(self._ids)
            self._pending[request_id] = _Pending()
        return request_id

    def answer(self, snapshot: StatusSnapshot) -> None:
        """A snapshot arrived (the agent thread): wake the caller waiting for it, if any."""
        with self._lock:
            pending = self._pending.get(snapshot.request_id)
        if pending is not None:
            pending.snapshot = snapshot
            pending.answered.set()

    def wait(
        self, request_id: int, timeout_seconds: float, lost: Callable[[], DisconnectedError | None]
    ) -> StatusSnapshot:
        """The answer to ``request_id``; raise ``DisconnectedError`` if ``lost()`` says the scheduler went,
        ``TimeoutError`` if no answer came within ``timeout_seconds``."""
        with self._lock:
            pending = self._pending[request_id]
        try:
            waited = 0.0
            while not pending.answered.wait(min(_POLL_SECONDS, max(0.0, timeout_seconds - waited))):
                waited += _POLL_SECONDS
                error = lost()
                if error is not None:
                    raise DisconnectedError(f"no status from the scheduler: {error}")
                if waited >= timeout_seconds:
                    raise TimeoutError(f"the scheduler did not answer the status request within {timeout_seconds:g}s")
            assert pending.snapshot is not None
            return pending.snapshot
        finally:
            with self._lock:
                del self._pending[request_id]

    def __len__(self) -> int:
        with self._lock:
            return len(self._pending)
