"""Progress bars: ``scaler.progress(futures)`` and ``progress=True`` on ``Client.map``/``starmap``/``get``.

The bar is tqdm's (``tqdm.auto``: a text bar in a terminal, a widget in Jupyter), with its counts,
rate and time left, and a postfix that keeps failures and cancellations apart from successes::

    tasks: 100%|██████████| 10/10 [00:02<00:00, 4.9task/s, ok=8, failed=1, cancelled=1]

Only the thread that waits touches the bar: it waits with ``concurrent.futures.as_completed``
and updates the bar for each future that ends. No callback runs on the client's agent thread
(where futures complete), so the bar needs no lock, and a slow terminal never delays results.
"""

from __future__ import annotations

import concurrent.futures
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

from scaler.client.future import ScalerFuture
from scaler.utility import task_context

__all__ = ["ProgressOptions", "gather", "progress", "wanted"]

_POLL_SECONDS = 0.5

ProgressOptions = bool | Mapping[str, Any]  # ``progress=`` of Client methods: True, or the bar's options


def __getattr__(name: str) -> Any:
    """``tqdm`` and ``text_tqdm``, imported at the first bar: tqdm costs a tenth of a second to import."""
    if name not in ("tqdm", "text_tqdm"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from tqdm.auto import tqdm
    from tqdm.std import tqdm as text_tqdm

    names = globals()
    names.setdefault("tqdm", tqdm)  # setdefault: what a test put in their place stays
    names.setdefault("text_tqdm", text_tqdm)
    return names[name]


def wanted(options: ProgressOptions) -> bool:
    """Whether ``progress=options`` asks for a bar: ``True``, or a mapping of options (even empty)."""
    return options is True or isinstance(options, Mapping)


class _Bar:
    """A tqdm bar counting successes, failures and cancellations; used by one thread only."""

    def __init__(self, total: int, options: Mapping[str, Any]) -> None:
        settings: dict[str, Any] = {"unit": "task", "dynamic_ncols": True}
        settings.update(options)
        bars = sys.modules[__name__]  # through the module's __getattr__: tqdm is imported here
        try:
            self._tqdm = bars.tqdm(total=total, **settings)
        except ImportError:  # Jupyter without ipywidgets: tqdm.auto's widget cannot draw, so draw text
            self._tqdm = bars.text_tqdm(total=total, **settings)
        self.ok = self.failed = self.cancelled = 0
        self._show_counts()

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *_: object) -> None:
        self._tqdm.close()

    def ended(self, future: concurrent.futures.Future[Any]) -> None:
        """Count one future that has ended (its outcome is set: reading it never blocks)."""
        if future.cancelled():
            self.cancelled += 1
        elif future.exception() is not None:
            self.failed += 1
        else:
            self.ok += 1
        self._show_counts()
        self._tqdm.update(1)  # redraws at most every ``mininterval`` seconds, and always on close

    def _show_counts(self) -> None:
        self._tqdm.set_postfix_str(f"ok={self.ok}, failed={self.failed}, cancelled={self.cancelled}", refresh=False)


def progress(
    futures: Iterable[concurrent.futures.Future[Any]] | Mapping[Any, concurrent.futures.Future[Any]],
    *,
    desc: str | None = None,
    file: IO[str] | None = None,
    disable: bool | None = False,
    timeout: float | None = None,
    **tqdm_options: Any,
) -> None:
    """Show a progress bar as ``futures`` end; return once all have ended.

    ``futures`` is any iterable of futures (``ScalerFuture`` or any ``concurrent.futures.Future``),
    or a mapping whose values are futures (such as ``client.get(..., block=False)`` returns).
    The bar shows how many ended, the rate and the time left, and in its postfix how many
    succeeded, failed and were cancelled. It never raises for a failed or cancelled future: read
    the futures afterwards for their results. A future listed twice counts once.

    ``desc`` labels the bar, ``file`` is where it is drawn (default: stderr), ``disable=True``
    hides it (``None``: hidden when ``file`` is not a terminal); other keyword arguments go to
    ``tqdm`` (``unit``, ``ncols``, ``mininterval``...). ``timeout`` (seconds, default none) raises
    ``TimeoutError`` if some future has not ended by then, like ``concurrent.futures.as_completed``.
    Called in a done-callback (the client's agent thread, which completes the futures) while a
    ``ScalerFuture`` has not ended, it raises ``RuntimeError`` rather than wait forever.
    """
    if isinstance(futures, Mapping):
        futures = futures.values()
    pending = set(futures)
    options = {"desc": desc, "file": file, "disable": disable, **tqdm_options}
    deadline = None if timeout is None else time.monotonic() + timeout
    # A plain Future cancelled outside an executor never wakes as_completed (only
    # set_running_or_notify_cancel does): look for those between bounded waits. A ScalerFuture
    # always wakes it, so a batch of them is waited on in one go.
    poll = None if all(isinstance(future, ScalerFuture) for future in pending) else _POLL_SECONDS
    for future in pending:
        if isinstance(future, ScalerFuture) and future._wait_would_hang():
            raise RuntimeError(
                "scaler.progress cannot wait on the client's agent thread (in a done-callback), which is the "
                "thread that completes the futures; call it from another thread"
            )
    with _Bar(len(pending), options) as bar, task_context.blocked():  # in a task: let its worker run others
        while pending:
            for future in [future for future in pending if future.cancelled()]:
                pending.discard(future)
                bar.ended(future)
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            wait = left if poll is None else poll if left is None else min(poll, left)
            try:
                for future in concurrent.futures.as_completed(pending, wait):
                    pending.discard(future)
                    bar.ended(future)
            except concurrent.futures.TimeoutError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"{len(pending)} of the futures did not end within {timeout} s") from None


def gather(futures: Sequence[concurrent.futures.Future[Any]], options: ProgressOptions) -> list[Any]:
    """The results of ``futures`` in order, drawing a bar (``options``) as they end.

    It raises as waiting in order would: the exception of the first future, in order, that failed
    or was cancelled, once every future before it succeeded. The caller cancels the rest.
    """
    bar_options: Mapping[str, Any] = options if isinstance(options, Mapping) else {}
    count = len(futures)
    ended: set[concurrent.futures.Future[Any]] = set()
    settled = 0  # futures[:settled] all succeeded
    with _Bar(count, bar_options) as bar:
        for future in concurrent.futures.as_completed(futures):
            bar.ended(future)
            ended.add(future)
            while settled < count and futures[settled] in ended:
                first = futures[settled]
                if first.cancelled() or first.exception() is not None:
                    first.result()  # raises its exception, or CancelledError
                settled += 1
            if settled == count:
                break
    return [future.result() for future in futures]
