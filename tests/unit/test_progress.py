"""``scaler.progress`` and the ordered gather behind ``progress=True``, on plain futures (no cluster)."""

from __future__ import annotations

import concurrent.futures
import io
import re
import threading
from typing import Any

import pytest

from scaler import progress
from scaler.client import progress as progress_bars


def finished(value: Any) -> concurrent.futures.Future[Any]:
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    future.set_result(value)
    return future


def failed(error: BaseException) -> concurrent.futures.Future[Any]:
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    future.set_exception(error)
    return future


def cancelled(notify: bool = True) -> concurrent.futures.Future[Any]:
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    future.cancel()
    if notify:  # what an executor does when it reaches a cancelled work item
        future.set_running_or_notify_cancel()
    return future


def last_line(output: io.StringIO) -> str:
    """What the terminal shows at the end: the text after the last carriage return."""
    return re.split(r"[\r\n]+", output.getvalue().strip())[-1]


def test_the_bar_counts_successes_failures_and_cancellations_apart() -> None:
    futures = [finished(1), finished(2), finished(3), failed(ValueError("no")), cancelled()]
    output = io.StringIO()
    progress(futures, file=output, desc="work")
    line = last_line(output)
    assert line.startswith("work: 100%")
    assert "5/5" in line
    assert "ok=3, failed=1, cancelled=1" in line
    assert "task/s" in line  # the rate


def test_it_waits_for_futures_that_end_later_on_another_thread() -> None:
    futures: list[concurrent.futures.Future[Any]] = [concurrent.futures.Future() for _ in range(6)]

    def finish() -> None:
        for index, future in enumerate(futures):
            future.set_running_or_notify_cancel()
            if index % 3 == 2:
                future.set_exception(RuntimeError(str(index)))
            else:
                future.set_result(index)

    timer = threading.Timer(0.2, finish)
    timer.start()
    output = io.StringIO()
    progress(futures, file=output, mininterval=0)
    timer.join()
    assert all(future.done() for future in futures)
    line = last_line(output)
    assert "6/6" in line and "ok=4, failed=2, cancelled=0" in line
    assert "0/6" in output.getvalue()  # drawn before anything ended, then updated


def test_a_future_cancelled_without_an_executor_does_not_hang() -> None:
    output = io.StringIO()
    progress([cancelled(notify=False), finished(1)], file=output)
    assert "ok=1, failed=0, cancelled=1" in last_line(output)


def test_a_future_cancelled_while_waiting_does_not_hang() -> None:
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()
    timer = threading.Timer(0.1, future.cancel)
    timer.start()
    output = io.StringIO()
    progress([future], file=output)
    timer.join()
    assert "cancelled=1" in last_line(output)


def test_a_mapping_counts_its_values_and_a_repeated_future_counts_once() -> None:
    one = finished("a")
    output = io.StringIO()
    progress({"x": one, "y": finished("b")}, file=output)
    assert "2/2" in last_line(output)
    output = io.StringIO()
    progress([one, one], file=output)
    assert "1/1" in last_line(output)


def test_no_futures_returns_at_once() -> None:
    output = io.StringIO()
    progress([], file=output)
    assert "ok=0, failed=0, cancelled=0" in last_line(output)


def test_disable_draws_nothing() -> None:
    output = io.StringIO()
    progress([finished(1)], file=output, disable=True)
    assert output.getvalue() == ""


def test_timeout_raises_when_a_future_does_not_end() -> None:
    never: concurrent.futures.Future[Any] = concurrent.futures.Future()
    with pytest.raises(TimeoutError, match="1 of the futures"):
        progress([never, finished(1)], file=io.StringIO(), timeout=0.3)


def test_tqdm_options_pass_through() -> None:
    output = io.StringIO()
    progress([finished(1)], file=output, unit="job", ncols=100)
    assert "job/s" in last_line(output)


def test_without_ipywidgets_in_jupyter_it_draws_text(monkeypatch: pytest.MonkeyPatch) -> None:
    def widget_bar(**options: Any) -> None:
        raise ImportError("IProgress not found. Please update jupyter and ipywidgets.")  # as tqdm.notebook

    monkeypatch.setattr(progress_bars, "tqdm", widget_bar)
    output = io.StringIO()
    progress([finished(1)], file=output)
    assert "1/1" in last_line(output)


# -- the ordered gather of map, starmap and get ------------------------------------------------------


def test_gather_returns_the_results_in_order_whatever_order_they_end_in() -> None:
    futures: list[concurrent.futures.Future[Any]] = [concurrent.futures.Future() for _ in range(4)]

    def finish_backwards() -> None:
        for index in reversed(range(4)):
            futures[index].set_result(index * 10)

    timer = threading.Timer(0.1, finish_backwards)
    timer.start()
    output = io.StringIO()
    assert progress_bars.gather(futures, {"file": output}) == [0, 10, 20, 30]
    timer.join()
    assert "4/4" in last_line(output)


def test_gather_raises_the_first_failure_in_order_not_the_first_to_happen() -> None:
    early, late = ValueError("second, but first to fail"), KeyError("first in order")
    futures: list[concurrent.futures.Future[Any]] = [concurrent.futures.Future() for _ in range(3)]
    futures[1].set_exception(early)
    timer = threading.Timer(0.1, lambda: futures[0].set_exception(late))
    timer.start()
    with pytest.raises(KeyError, match="first in order"):
        progress_bars.gather(futures, {"file": io.StringIO()})
    timer.join()
    assert not futures[2].done()  # it did not wait for the third: the outcome was known


def test_gather_raises_cancelled_error_for_a_cancelled_future_in_order() -> None:
    with pytest.raises(concurrent.futures.CancelledError):
        progress_bars.gather([finished(1), cancelled(), failed(ValueError())], {"file": io.StringIO()})


def test_wanted_means_true_or_options() -> None:
    assert progress_bars.wanted(True)
    assert progress_bars.wanted({})
    assert progress_bars.wanted({"desc": "x"})
    assert not progress_bars.wanted(False)
