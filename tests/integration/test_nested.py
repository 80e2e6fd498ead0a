"""Tasks that submit tasks: ``Client()`` inside a task, and a ``Client`` passed to a task."""

from __future__ import annotations

import collections.abc
import pickle
import sys

import cloudpickle
import pytest

from scaler import Client, SchedulerClusterCombo

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import the tests package


def fib(n: int) -> int:
    """Recursive Fibonacci, each call a task with its own client of the worker's scheduler."""
    if n < 2:
        return n
    with Client() as client:
        left = client.submit(fib, n - 1)
        right = client.submit(fib, n - 2)
        return int(left.result()) + int(right.result())


def fib_with(client: Client, n: int) -> int:
    """Recursive Fibonacci through the client it was given (rebuilt once per worker process)."""
    if n < 2:
        return n
    left = client.submit(fib_with, client, n - 1)
    right = client.submit(fib_with, client, n - 2)
    return int(left.result()) + int(right.result())


def depth(client: Client, n: int) -> int:
    """A chain of ``n`` nested tasks, each waiting on the next."""
    if n == 0:
        return 0
    return 1 + int(client.submit(depth, client, n - 1).result())


def nested_map(client: Client, n: int) -> list[int]:
    return client.map(abs, [-i for i in range(n)])


def nested_graph(client: Client) -> int:
    return int(client.get({"a": 20, "b": (sum, ["a", "a"])}, ["b"])["b"])


def scheduler_of_inner_client() -> str:
    with Client() as client:
        return client.address


@pytest.fixture(scope="module")
def three_workers() -> collections.abc.Iterator[SchedulerClusterCombo]:
    with SchedulerClusterCombo(n_workers=3, logging_level="WARNING") as cluster:
        yield cluster


def test_client_inside_a_task_connects_to_the_workers_scheduler(client: Client, combo: SchedulerClusterCombo) -> None:
    assert client.submit(scheduler_of_inner_client).result(timeout=30) == combo.get_address()


@pytest.mark.timeout(120)
def test_fib_8_with_a_client_in_each_task_on_two_workers(client: Client) -> None:
    assert client.submit(fib, 8).result(timeout=110) == 21


@pytest.mark.timeout(120)
def test_a_client_passed_to_tasks(client: Client) -> None:
    assert client.submit(fib_with, client, 8).result(timeout=110) == 21
    assert client.submit(nested_map, client, 5).result(timeout=30) == [0, 1, 2, 3, 4]
    assert client.submit(nested_graph, client).result(timeout=30) == 40


@pytest.mark.timeout(120)
def test_recursion_depth_10_on_three_workers(three_workers: SchedulerClusterCombo) -> None:
    with Client(three_workers.get_address(), timeout_seconds=30) as client:
        assert client.submit(depth, client, 10).result(timeout=110) == 10


def test_a_client_pickles_as_its_address(client: Client) -> None:
    assert len(pickle.dumps(client)) < 1000
    assert pickle.loads(pickle.dumps(client)) is client
