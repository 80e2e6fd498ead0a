"""Progress bars on a real local cluster: ``scaler.progress`` and ``progress=`` of map, starmap and get."""

from __future__ import annotations

import io
import re
import sys
import threading
import time

import cloudpickle
import pytest

import scaler
from scaler import Client

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import the tests package


def square(x: int) -> int:
    return x * x


def fail_on(x: int, bad: int) -> int:
    if x == bad:
        raise ValueError(f"bad item {x}")
    time.sleep(0.01)
    return x


def sleep_return(seconds: float, value: object) -> object:
    time.sleep(seconds)
    return value


def megabytes(count: int, fill: int) -> bytes:
    return bytes([fill]) * (count * 1_000_000)


def last_line(output: io.StringIO) -> str:
    return re.split(r"[\r\n]+", output.getvalue().strip())[-1]


def test_map_with_a_bar_returns_what_map_returns(client: Client) -> None:
    output = io.StringIO()
    with_bar = client.map(square, range(30), progress={"file": output, "desc": "squares"})
    assert with_bar == client.map(square, range(30)) == [x * x for x in range(30)]
    line = last_line(output)
    assert line.startswith("squares: 100%") and "30/30" in line
    assert "ok=30, failed=0, cancelled=0" in line


def test_starmap_with_a_bar_and_big_results_kept_on_the_scheduler(client: Client) -> None:
    output = io.StringIO()
    values = client.starmap(megabytes, [(1, fill) for fill in range(4)], progress={"file": output})
    assert [(len(value), value[0]) for value in values] == [(1_000_000, fill) for fill in range(4)]
    assert "4/4" in last_line(output) and "ok=4" in last_line(output)


def test_a_failure_raises_as_without_a_bar_and_shows_on_the_bar(client: Client) -> None:
    with pytest.raises(ValueError, match="bad item 3") as plain:
        client.map(fail_on, range(8), [3] * 8)
    output = io.StringIO()
    with pytest.raises(ValueError, match="bad item 3") as barred:
        client.map(fail_on, range(8), [3] * 8, progress={"file": output})
    assert type(plain.value) is type(barred.value)
    assert isinstance(barred.value.__cause__, scaler.RemoteTraceback)  # the remote traceback, as without a bar
    assert "failed=1" in last_line(output)


def test_progress_of_submitted_futures_counts_failures_and_cancellations(client: Client) -> None:
    quick = [client.submit(square, x) for x in range(6)]
    failing = [client.submit(fail_on, x, x) for x in range(2)]
    slow = [client.submit(sleep_return, 30, None) for _ in range(2)]
    futures = quick + failing + slow
    canceller = threading.Timer(0.5, lambda: [future.cancel() for future in slow])
    canceller.start()
    output = io.StringIO()
    started = time.monotonic()
    scaler.progress(futures, file=output, desc="mixed")  # returns once the slow ones are cancelled
    canceller.join()
    assert time.monotonic() - started < 20
    assert all(future.done() for future in futures)
    line = last_line(output)
    assert "10/10" in line and "ok=6, failed=2, cancelled=2" in line
    assert [future.result() for future in quick] == [x * x for x in range(6)]  # results unchanged


def test_get_with_a_bar_returns_what_get_returns(client: Client) -> None:
    graph = {"a": 3, "b": (square, "a"), "c": (square, "b"), "d": (sleep_return, 0.1, "c")}
    output = io.StringIO()
    assert client.get(graph, ["b", "c", "d"], progress={"file": output}) == {"b": 9, "c": 81, "d": 81}
    assert client.get(graph, ["b", "c", "d"]) == {"b": 9, "c": 81, "d": 81}
    assert "3/3" in last_line(output) and "ok=3" in last_line(output)


def test_get_with_a_bar_needs_block(client: Client) -> None:
    with pytest.raises(ValueError, match="block=True"):
        client.get({"a": (square, 2)}, ["a"], block=False, progress=True)


def test_progress_of_the_futures_get_returns_without_blocking(client: Client) -> None:
    futures = client.get({"a": (square, 2), "b": (fail_on, 1, 1)}, ["a", "b"], block=False)
    output = io.StringIO()
    scaler.progress(futures, file=output)
    assert "2/2" in last_line(output) and "ok=1, failed=1" in last_line(output)
    assert futures["a"].result() == 4


def test_progress_in_a_done_callback_refuses_rather_than_hangs(client: Client) -> None:
    slow = client.submit(sleep_return, 30, None)
    seen: list[BaseException] = []
    called = threading.Event()

    def on_done(_: object) -> None:
        try:
            scaler.progress([slow], file=io.StringIO())
        except RuntimeError as error:
            seen.append(error)
        called.set()

    client.submit(square, 2).add_done_callback(on_done)
    assert called.wait(30)
    assert seen and "agent thread" in str(seen[0])
    assert slow.cancel(timeout=10)
