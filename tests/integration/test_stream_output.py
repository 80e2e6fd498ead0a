"""``Client(stream_output=True)``: what tasks print shows on the client, prefixed with the task id."""

from __future__ import annotations

import collections.abc
import concurrent.futures
import os
import sys
import threading
import time

import cloudpickle
import pytest

from scaler import Client, SchedulerClusterCombo
from scaler.worker import processor_context

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import the tests package


def chatty(name: str) -> str:
    print(f"hello from {name}")
    print("second line")
    print(f"warning from {name}", file=sys.stderr)
    return name


@pytest.fixture
def streaming_client(combo: SchedulerClusterCombo) -> collections.abc.Iterator[Client]:
    with Client(combo.get_address(), timeout_seconds=10, stream_output=True) as connected:
        yield connected


def test_task_output_is_printed_with_the_task_id(streaming_client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    future = streaming_client.submit(chatty, "one")
    assert future.result(timeout=30) == "one"
    prefix = f"[{future.task_id.hex()}] "
    out, err = capsys.readouterr()
    assert f"{prefix}hello from one\n{prefix}second line\n" in out
    assert f"{prefix}warning from one\n" in err


def test_graph_output_is_printed_too(streaming_client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    futures = streaming_client.get({"a": (chatty, "graph")}, ["a"], block=False)
    assert futures["a"].result(timeout=30) == "graph"
    assert f"[{futures['a'].task_id.hex()}] hello from graph\n" in capsys.readouterr().out


def test_without_stream_output_nothing_is_printed(client: Client, capsys: pytest.CaptureFixture[str]) -> None:
    assert client.submit(chatty, "quiet").result(timeout=30) == "quiet"
    out, err = capsys.readouterr()
    assert "hello from quiet" not in out and "warning from quiet" not in err


def shout_while_children_run(children: int, seconds: float) -> float:
    """Print in a tight loop for ``seconds`` while waiting on ``children`` nested tasks; return their wait.

    It counts as blocked the whole time (as a task waiting on others does), so its worker is free
    to run other tasks meanwhile; and it runs at a low CPU priority, so that twelve busy loops on a
    small machine do not starve the others of CPU: only the printing can get in their way.
    """
    os.nice(19)  # its processor runs only this test's tasks, and is killed with its cluster
    stop = threading.Event()

    def shout() -> None:
        line = "x" * 1000
        while not stop.is_set():
            print(line)

    thread = threading.Thread(target=shout, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        with Client(address=processor_context.scheduler_address(), timeout_seconds=60) as client:
            futures = [client.submit(abs, -index) for index in range(children)]
            with processor_context.blocked():
                assert [future.result(timeout=120) for future in futures] == list(range(children))
                waited = time.monotonic() - started
                stop.wait(max(0.0, seconds - waited))
    finally:
        stop.set()
        thread.join()
    return waited


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_printing_floods_do_not_starve_other_tasks(capfd: pytest.CaptureFixture[str]) -> None:
    """Twelve tasks print without pause; the nested children they wait on, and another client's tasks, run promptly."""
    with (
        SchedulerClusterCombo(n_workers=2, logging_level="WARNING") as combo,
        Client(combo.get_address(), timeout_seconds=60, stream_output=True) as loud,
        Client(combo.get_address(), timeout_seconds=60) as quiet,
    ):
        printers = [loud.submit(shout_while_children_run, 4, 6.0) for _ in range(12)]
        # Wait until every printer prints (a worker starts them one after another), so that the
        # short tasks do not also wait for printers still queued ahead of them.
        captured: list[str] = []
        silent = {printer.task_id for printer in printers}
        deadline = time.monotonic() + 60
        while silent and time.monotonic() < deadline:
            captured.append(capfd.readouterr().out)  # read as it comes: a failure would print megabytes
            silent = {task_id for task_id in silent if f"[{task_id.hex()}] x" not in captured[-1]}
            time.sleep(0.05)
        started = time.monotonic()
        shorts = [quiet.submit(abs, -index) for index in range(50)]
        done, not_done = concurrent.futures.wait(shorts, timeout=60)
        shorts_seconds = time.monotonic() - started
        printing = sum(not printer.done() for printer in printers)
        waits = [printer.result(timeout=120) for printer in printers]
    captured.append(capfd.readouterr().out)
    out = "".join(captured)
    assert not silent, "some printers never printed"
    assert not not_done
    assert shorts_seconds < 10, f"50 short tasks took {shorts_seconds:.1f} s while tasks printed"
    assert printing, "the short tasks did not run while the printers ran"
    assert max(waits) < 10, f"nested children waited up to {max(waits):.1f} s while their parents printed"
    assert "bytes of output dropped (over the output limit)" in out
