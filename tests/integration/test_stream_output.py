"""``Client(stream_output=True)``: what tasks print shows on the client, prefixed with the task id."""

from __future__ import annotations

import collections.abc
import sys

import cloudpickle
import pytest

from scaler import Client, SchedulerClusterCombo

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
