"""``ScalerFuture``: a real ``concurrent.futures.Future`` whose ``cancel()`` asks the scheduler.

The future's outcome is set only by its ``ClientFutureManager`` (through ``_claim``, ``_settle*``,
``_keep`` and ``_finish_fetch``), always through the public hooks of ``concurrent.futures.Future``
and with callbacks run outside locks. Where the task's answer stands is one ``FutureStage``
(``future_stage.py``), moved only along its transition table, under the base class's condition.
Its private access to the base class (``_condition``, ``_waiters``, ``_done_callbacks`` and
``_invoke_callbacks``) is in this module only.

``cancel(timeout=None)``:

- cancelled already → ``True``; finished → ``False`` and nothing is sent;
- otherwise one ``TaskCancel`` is sent (a second call while it is in flight sends nothing) and
  the call waits for the scheduler's answer, a result, or ``timeout``:
  ``canceled``/``cancel_not_found`` → cancelled, ``True``; ``cancel_failed`` → stays pending,
  ``False``; a result arriving after the request → discarded and cancelled, ``True``;
  timeout → ``False``, while a late answer still cancels the future.

Kept results: when the scheduler keeps a big result, the future is ``done()`` at once but
holds no value yet. The value is fetched the first time someone needs it: ``result()``,
``exception()``, ``add_done_callback`` (so ``await``), ``concurrent.futures.wait`` and
``as_completed`` (whose waiters are appended to ``_waiters``: a list that asks for the fetch on
``append``). Until the fetch completes the base future stays pending, so those waits and
callbacks fire exactly once, when the value is there. Whoever needs the value before the result
arrives is in ``_waiters`` too: ``result()``, a callback or ``Client.map`` puts a no-op waiter
there, so "someone wants it" is "``_waiters`` is not empty", and a pending future that nobody
waits on carries no flag at all.

Size: one pending future holds what ``concurrent.futures.Future`` holds, except that its
``_condition`` is a ``_FutureCondition`` (an ``RLock`` and, once someone waits, a list of
sleepers) instead of a ``threading.Condition`` (an instance dict, five bound methods and a
``deque`` block: about 1.2 KiB of a stdlib future's 1.6 KiB). Futures are made per task, and a
client may hold hundreds of thousands.

Inside a worker's processor, a wait that will block tells the worker (``scaler.utility.task_context``)
so it can run other tasks meanwhile: a task that waits on its children never holds the only slot.
"""

from __future__ import annotations

import _thread
import asyncio
import concurrent.futures
import logging
import threading
import time
import weakref
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from scaler.client.future_stage import (
    AWAITING_ANSWER,
    VALUE_ON_SCHEDULER,
    FutureEvent,
    FutureStage,
    FutureStateError,
    next_stage,
)
from scaler.protocol.messages import TaskResult
from scaler.utility import task_context

if TYPE_CHECKING:
    from scaler.client.future_manager import ClientFutureManager

logger = logging.getLogger(__name__)

_SUBMITTED, _CANCELING, _SETTLING = FutureStage.SUBMITTED, FutureStage.CANCELING, FutureStage.SETTLING
_KEPT, _FETCHING, _SETTLED = FutureStage.KEPT, FutureStage.FETCHING, FutureStage.SETTLED


@dataclass(frozen=True)
class ProfileResult:
    """Where a task's time and memory went (``Client(profiling=True)``), in seconds and bytes.

    The first three keep Scaler's names. The processor measures the function call
    (``duration_s``, ``cpu_time_s``), the peak memory, loading the task (``load_s``: its objects,
    function and arguments unpickled) and its result (``serialize_s``, ``result_bytes``). The
    scheduler measures ``queue_wait_s`` (submitted until a worker started it) and ``transfer_s``
    (handed to a worker until it started there: the function and arguments reaching it); they
    stay 0.0 with a scheduler that does not measure them.
    """

    duration_s: float  # wall-clock time of the function call
    cpu_time_s: float  # CPU time of the processor during the call (all its threads)
    memory_peak: int  # peak resident memory of the processor while it ran the task, interpreter included
    load_s: float = 0.0  # fetching the task's objects and unpickling its function and arguments
    serialize_s: float = 0.0  # pickling the result (or the exception it raised)
    result_bytes: int = 0  # the pickled result's size
    queue_wait_s: float = 0.0  # submitted -> started on a worker
    transfer_s: float = 0.0  # sent to a worker -> started there

    @classmethod
    def from_result(cls, result: TaskResult) -> ProfileResult:
        """The figures a ``TaskResult`` carries."""
        return cls(
            result.duration_seconds,
            result.cpu_seconds,
            result.peak_memory_bytes,
            result.load_seconds,
            result.serialize_seconds,
            result.result_bytes,
            result.queue_wait_seconds,
            result.transfer_seconds,
        )


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class _Demand:
    """A waiter that only says "someone needs the value"; the base class notifies it, and it ignores that."""

    __slots__ = ()

    def add_result(self, future: object) -> None:
        """Nothing to do: the one who asked reads the future itself."""

    add_exception = add_cancelled = add_result


_DEMAND = _Demand()


class _FetchingWaiters(list):  # type: ignore[type-arg]
    """The base future's ``_waiters`` once its result is kept: ``wait`` and ``as_completed`` append
    here, which asks for the fetch."""

    def __init__(self, future: ScalerFuture, waiters: list[Any]) -> None:
        super().__init__(waiters)
        self._future = weakref.ref(future)

    def append(self, waiter: Any) -> None:
        super().append(waiter)
        future = self._future()
        if future is not None:
            future._want()


class _FutureCondition:
    """``threading.Condition``'s interface, as ``concurrent.futures`` uses it, in two slots.

    Same semantics over the same kind of lock (an ``RLock``: a future's methods nest). The list
    of sleeping threads is made at the first ``wait``; most futures are never waited on alone.
    """

    __slots__ = ("_lock", "_waiters")  # threading.Condition's names, which tests peek at

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._waiters: list[_thread.LockType] | None = None

    def __enter__(self) -> bool:
        return self._lock.__enter__()

    def __exit__(self, *exc_info: Any) -> None:
        self._lock.__exit__(*exc_info)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock, as ``RLock.acquire``."""
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        """Give the lock back, as ``RLock.release``."""
        self._lock.release()

    def wait(self, timeout: float | None = None) -> bool:
        """Release the lock until notified or ``timeout`` passes; True if notified."""
        lock: Any = self._lock  # the C RLock's private helpers, which threading.Condition uses too
        if not lock._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        sleeper = _thread.allocate_lock()
        sleeper.acquire()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(sleeper)
        saved = lock._release_save()  # every level of the RLock, as Condition.wait does
        woken = False
        try:
            if timeout is None:
                woken = sleeper.acquire()
            elif timeout > 0:
                woken = sleeper.acquire(True, timeout)
            else:
                woken = sleeper.acquire(False)
            return woken
        finally:
            lock._acquire_restore(saved)
            if not woken and sleeper in self._waiters:  # timed out, and no notify took it off the list
                self._waiters.remove(sleeper)

    def wait_for(self, predicate: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wait until ``predicate()`` is true or ``timeout`` passes; return its last value."""
        deadline = None if timeout is None else time.monotonic() + timeout
        result = predicate()
        while not result:
            left = None
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
            self.wait(left)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        """Wake up to ``n`` waiting threads; the caller holds the lock."""
        lock: Any = self._lock
        if not lock._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        sleepers = self._waiters
        if not sleepers:
            return
        for sleeper in sleepers[:n]:
            sleeper.release()
        del sleepers[:n]

    def notify_all(self) -> None:
        """Wake every waiting thread; the caller holds the lock."""
        self.notify(len(self._waiters or ()))


class ScalerFuture(concurrent.futures.Future[Any]):
    """The handle of one submitted task; see the module docstring for the cancel contract."""

    # The base class's list, made at the first add_done_callback: only this class's methods touch
    # it (concurrent.futures' wait() and as_completed() use _waiters), and most futures get none.
    # A tuple, so that a stray append fails loudly instead of sharing callbacks among futures.
    _done_callbacks: list[Callable[[concurrent.futures.Future[Any]], object]] = ()  # type: ignore[assignment]
    _waiters: list[Any]

    # Defaults as class attributes: a future is made per task, and most never change them.
    _stage = FutureStage.SUBMITTED
    _kept: TaskResult | None = None  # a result the scheduler keeps until fetched
    _release: weakref.finalize[Any, Any] | None = None  # frees an unfetched result
    _profile: ProfileResult | None = None
    _function_name = ""  # set by the client that submitted it

    _profiling = False

    def __init__(self, task_id: bytes, owner: ClientFutureManager, profiling: bool = False) -> None:
        # The base class's attributes, set here rather than by its __init__, which would make a
        # threading.Condition only to drop it (tests check that none is missing on this Python).
        self._condition = _FutureCondition()  # type: ignore[assignment]
        self._state = concurrent.futures._base.PENDING
        self._result = None
        self._exception = None
        self._waiters = []
        self._task_id = task_id
        self._owner = owner
        if profiling:
            self._profiling = True

    @property
    def task_id(self) -> bytes:
        """The task's id, as it appears in logs on every process."""
        return self._task_id

    @property
    def function_name(self) -> str:
        """The name of the function the task runs (``""`` if unknown), as the task report shows it."""
        return self._function_name

    def running(self) -> bool:
        """True from the moment ``submit()`` returns until the future is done, as in Scaler.

        It does not say whether a worker has started the task: a queued task counts as running
        here. ``cancel()`` does not refuse a running future; see the module docstring.
        """
        return not self.done()

    def done(self) -> bool:
        """True once the task has ended, including when its big result still waits on the scheduler."""
        stage = self._stage
        return stage is _KEPT or stage is _FETCHING or super().done()

    def result(self, timeout: float | None = None) -> Any:
        """The task's value, fetched from the scheduler first if it kept it; see ``concurrent.futures``."""
        try:
            return super().result(0)  # the common case, settled already: one lock, as in the base class
        except concurrent.futures.TimeoutError:
            pass  # pending (or a task that raised a TimeoutError, which the second call raises again)
        self._wait_for_value(timeout)
        return super().result(0)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The task's exception or None, fetched first if the scheduler kept it; see ``concurrent.futures``."""
        try:
            return super().exception(0)
        except concurrent.futures.TimeoutError:
            pass
        self._wait_for_value(timeout)
        return super().exception(0)

    def add_done_callback(self, fn: Callable[[concurrent.futures.Future[Any]], object]) -> None:
        """Call ``fn(future)`` once the value is here (fetching a kept result first).

        Whatever ``fn`` raises, ``SystemExit`` and ``KeyboardInterrupt`` included, is logged:
        callbacks run on the client's agent thread, which must go on delivering results.
        """
        with self._condition:
            if not super().done():
                if self._done_callbacks:
                    self._done_callbacks.append(fn)
                else:
                    self._done_callbacks = [fn]
                call_now = False
            else:
                call_now = True
        if call_now:
            self._call(fn)
        self._want()

    def _invoke_callbacks(self) -> None:
        # Replaces the base class's loop, which lets BaseException out: a callback calling
        # sys.exit() would end the agent thread, and every other future would wait forever.
        for callback in self._done_callbacks:
            self._call(callback)

    def _call(self, callback: Callable[[concurrent.futures.Future[Any]], object]) -> None:
        try:
            callback(self)
        except BaseException:
            logger.exception("task %s: a done-callback raised; result delivery goes on", self._task_id.hex())

    def profiling_info(self) -> ProfileResult:
        """Time and memory the task used; ``ValueError`` before its result or without ``profiling=True``."""
        if not self._profiling:
            raise ValueError(f"task {self._task_id.hex()} was not profiled; use Client(profiling=True)")
        if self._profile is None:
            raise ValueError(f"task {self._task_id.hex()} has no profiling information yet: it has not finished")
        return self._profile

    def cancel(self, timeout: float | None = None) -> bool:
        """Cancel the task on the cluster; see the module docstring for every outcome."""
        with self._condition:
            if self.cancelled():
                return True
            if self.done():
                return False
            send = self._stage is _SUBMITTED  # CANCELING: one request is enough; SETTLING: too late
            if send:
                self._move(FutureEvent.CANCEL)
        if send:
            self._owner.request_cancel(self)
        if self._owner.on_delivery_thread() or _on_event_loop():
            # On the thread that delivers answers, waiting would deadlock; on an event loop (an
            # awaiting task was cancelled) it would stall every coroutine. The answer still settles it.
            timeout = 0
        with self._condition:
            self._condition.wait_for(lambda: self.done() or self._stage is _SUBMITTED, timeout)
            return self.cancelled()

    def __await__(self) -> Generator[Any, None, Any]:
        """Make ``await future`` work in asyncio code."""
        return asyncio.wrap_future(self).__await__()

    # -- the stage -------------------------------------------------------------------------------

    def _move(self, event: FutureEvent) -> None:
        """Apply ``event`` along the transition table; the caller holds the condition."""
        self._stage = next_stage(self._stage, event, self._task_id)

    def _validate(self) -> None:
        """Raise ``FutureStateError`` if the stage and the base future disagree (for tests)."""
        with self._condition:
            stage, settled = self._stage, super().done()
            broken = ""
            if stage in AWAITING_ANSWER and settled:
                broken = "has an outcome while it still awaits its answer"
            elif stage in VALUE_ON_SCHEDULER and (settled or self._kept is None):
                broken = "is kept on the scheduler without a kept result, or with an outcome already"
            elif stage is _KEPT and (self._waiters or self._done_callbacks):
                broken = "is wanted, but its kept result is not being fetched"
            elif stage is _SETTLED and not settled:
                broken = "is settled without an outcome"
        if broken:
            raise FutureStateError(f"task {self._task_id.hex()}: the future {broken} ({stage.value})")

    # -- kept results -------------------------------------------------------------------------

    def _want(self) -> None:
        """Someone needs the value: fetch it now if the scheduler kept it (once), or as soon as it does.

        Also used by ``Client`` before it waits on many futures, so their fetches overlap.
        """
        with self._condition:
            stage = self._stage
            fetch = stage is _KEPT
            hint = False
            if fetch:
                self._move(FutureEvent.FETCH)
            elif stage in AWAITING_ANSWER and _DEMAND not in self._waiters:
                self._waiters.append(_DEMAND)  # _keep() fetches at once for a future with waiters
                hint = True
        if fetch:
            self._owner.request_fetch(self)
        elif hint:
            self._owner.request_result(self)  # a big result may then come straight on, not kept

    def _wait_for_value(self, timeout: float | None) -> None:
        """Wait until the base future holds the outcome (or ``timeout``); the caller then reads it.

        A loop on the condition, unlike the base class's single wait: the condition is also
        notified for cancel answers and kept results, which must not end a wait early.
        """
        self._want()
        self._check_can_wait()
        if super().done():
            return
        with task_context.blocked(), self._condition:
            self._condition.wait_for(lambda: concurrent.futures.Future.done(self), timeout)

    def _check_can_wait(self) -> None:
        if self._stage in VALUE_ON_SCHEDULER and self._owner.on_delivery_thread():
            raise RuntimeError(
                f"task {self._task_id.hex()}: its result is kept on the scheduler and must be fetched, which "
                f"cannot happen while the client's agent thread waits for it (in a done-callback); "
                f"read it from another thread"
            )

    def _wait_would_hang(self) -> bool:
        """Whether waiting here for the outcome would never end: on the thread that delivers it."""
        return not concurrent.futures.Future.done(self) and self._owner.on_delivery_thread()

    # -- used by ClientFutureManager only ------------------------------------------------------

    def _claim(self) -> bool | None:
        """Claim the outcome: return whether a cancel was requested, or None if already claimed."""
        with self._condition:
            stage = self._stage
            if stage is not _SUBMITTED and stage is not _CANCELING:
                return None
            self._move(FutureEvent.CLAIM)
            return stage is _CANCELING

    def _settle(self, ok: bool, value: Any) -> None:
        """Set the claimed outcome: a value, or an exception."""
        with self._condition:
            self._move(FutureEvent.SETTLE)
        if ok:
            self.set_result(value)
        else:
            self.set_exception(value)

    def _settle_cancelled(self) -> None:
        with self._condition:
            self._move(FutureEvent.SETTLE)
        concurrent.futures.Future.cancel(self)
        self.set_running_or_notify_cancel()  # wakes wait() and as_completed()

    def _cancel_refused(self) -> None:
        with self._condition:
            if self._stage is _CANCELING:
                self._move(FutureEvent.REFUSE)
                self._condition.notify_all()

    def _set_profile(self, result: TaskResult) -> None:
        if self._profiling:
            self._profile = ProfileResult.from_result(result)

    def _keep(self, result: TaskResult, release: weakref.finalize[Any, Any]) -> None:
        """The scheduler kept the claimed result: the future is done, and fetches when someone asks."""
        with self._condition:
            self._move(FutureEvent.KEEP)
            self._release = release
            self._kept = result
            # From now on, a waiter of wait() or as_completed() asks for the value; one already
            # waiting asks now. Swapped under the condition, which those functions hold to append.
            fetch = bool(self._waiters)
            self._waiters = _FetchingWaiters(self, self._waiters)
            if fetch:
                self._move(FutureEvent.FETCH)
            self._condition.notify_all()  # a blocked cancel() sees done()
        if fetch:
            self._owner.request_fetch(self)

    def _kept_result(self) -> TaskResult | None:
        return self._kept

    def _finish_fetch(self, ok: bool, value: Any) -> None:
        """Set the fetched value (or the error met fetching it); the result no longer needs freeing."""
        if self._release is not None:
            self._release.detach()
        with self._condition:
            if self._stage not in VALUE_ON_SCHEDULER:
                return
            self._move(FutureEvent.SETTLE)
        if ok:
            self.set_result(value)
        else:
            self.set_exception(value)
