"""The client's side of the status feed: the function names it puts on tasks, and ``Client.status()``.

A fake agent stands in for the socket thread (as in ``test_client_messages.py``): it records what
the client sends, and the test plays the scheduler's answer.
"""

from __future__ import annotations

import functools
import math
import operator
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from scaler.client.client import Client
from scaler.client.encoder import function_name
from scaler.errors import DisconnectedError
from scaler.protocol.messages import GraphTask, SchedulerStatus, StatusRequest, StatusSnapshot, Task
from tests.unit.test_client_messages import FakeAgent

pytestmark = pytest.mark.timeout(30)


def double(x: int) -> int:
    return 2 * x


class Scale:
    def __init__(self, factor: int) -> None:
        self.factor = factor

    def __call__(self, x: int) -> int:
        return self.factor * x

    def apply(self, x: int) -> int:
        return self.factor * x


@pytest.fixture
def client() -> Iterator[Client]:
    made = Client("tcp://127.0.0.1:1", agent_factory=FakeAgent)
    yield made
    made.disconnect()


def sent(client: Client, kind: type) -> list[Any]:
    agent: FakeAgent = client._agent  # type: ignore[assignment]
    return [message for message in agent.sent if isinstance(message, kind)]


def test_function_names() -> None:
    here = __name__
    assert function_name(double) == f"{here}.double"
    assert function_name(functools.partial(functools.partial(double), 3)) == f"{here}.double"
    assert function_name(math.sqrt) == "math.sqrt"
    assert function_name(abs) == "builtins.abs"
    assert function_name(Scale(2)) == f"{here}.Scale"
    assert function_name(Scale(2).apply) == f"{here}.Scale.apply"
    assert function_name(lambda x: x) == f"{here}.test_function_names.<locals>.<lambda>"
    assert len(function_name(type("x" * 500, (), {"__call__": lambda self: None})())) == 200


def test_every_task_names_its_function(client: Client) -> None:
    client.submit(double, 1)
    client.submit(double, 2)  # from the cache
    client.submit_verbose(Scale(3), (1,), {})
    client.submit(functools.partial(operator.add, 1), 2)
    assert [task.function_name for task in sent(client, Task)] == [
        f"{__name__}.double",
        f"{__name__}.double",
        f"{__name__}.Scale",
        "_operator.add",
    ]


def test_graph_nodes_name_their_function(client: Client) -> None:
    client.get({"a": 1, "b": (double, "a"), "c": (operator.add, "b", (double, 2)), "d": "c"}, ["d", "c"], block=False)
    (graph,) = sent(client, GraphTask)
    names = [node.function_name for node in graph.nodes]
    assert f"{__name__}.double" in names and "_operator.add" in names
    assert names.count("") == len(graph.nodes) - 2  # data and aliases call nothing


def snapshot(request_id: int) -> StatusSnapshot:
    scheduler = SchedulerStatus(b"s", "0", 1.0, 0.0, 0, 0.0, 0.0, {}, {}, 0, 0, 0)
    return StatusSnapshot(request_id, 1.0, 2.0, scheduler, [], [])


def answer_when_asked(client: Client, delay: float = 0.05) -> threading.Thread:
    """Play the scheduler: answer the next StatusRequest through the agent's handler."""

    def play() -> None:
        deadline = time.monotonic() + 10
        while not sent(client, StatusRequest) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(delay)
        client._status_requests.answer(snapshot(999))  # nobody asked for it: ignored
        client._status_requests.answer(snapshot(sent(client, StatusRequest)[-1].request_id))

    thread = threading.Thread(target=play)
    thread.start()
    return thread


def test_status_returns_the_answer_to_its_own_request(client: Client) -> None:
    player = answer_when_asked(client)
    got = client.status(timeout_seconds=10)
    player.join()
    (request,) = sent(client, StatusRequest)
    assert got == snapshot(request.request_id) and request.request_id > 0
    assert len(client._status_requests) == 0  # nothing kept once answered


def test_status_times_out_with_a_clear_error(client: Client) -> None:
    with pytest.raises(TimeoutError, match="did not answer the status request within 0.3s"):
        client.status(timeout_seconds=0.3)
    assert len(client._status_requests) == 0
    client._status_requests.answer(snapshot(sent(client, StatusRequest)[0].request_id))  # a late answer: dropped


def test_status_fails_when_the_scheduler_is_lost(client: Client) -> None:
    agent: FakeAgent = client._agent  # type: ignore[assignment]
    threading.Timer(0.2, lambda: setattr(agent, "error", DisconnectedError("the scheduler went away"))).start()
    with pytest.raises(DisconnectedError, match="went away"):
        client.status(timeout_seconds=10)


def test_status_of_a_disconnected_client_raises(client: Client) -> None:
    client.disconnect()
    with pytest.raises(DisconnectedError, match="disconnected"):
        client.status()
