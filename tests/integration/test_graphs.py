"""``Client.get`` with Dask-style graphs on a real local cluster (2 workers)."""

from __future__ import annotations

import concurrent.futures
import graphlib
import operator
import sys
import time

import cloudpickle
import pytest

from scaler import Client, RemoteTraceback, ScalerFuture

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import the tests package


def inc(x: int) -> int:
    return x + 1


def add(*values: int) -> int:
    return sum(values)


def fail(x: object) -> None:
    raise ArithmeticError(f"node failed on {x!r}")


def slow(seconds: float, value: object) -> object:
    time.sleep(seconds)
    return value


def test_a_graph_returns_the_asked_keys_in_order(client: Client) -> None:
    graph = {
        "a": 1,
        "b": 2,
        "c": (inc, "a"),
        "d": (add, "c", "b"),
        ("x", 0): (operator.mul, "d", 10),
        ("x", 1): (sum, ["a", "b", ("x", 0)]),
        "nested": (add, (inc, "a"), (inc, (inc, "b"))),
        "alias": "d",
        "unused": (fail, "a"),
    }
    keys = [("x", 1), "d", "nested", "alias", "a"]
    result = client.get(graph, keys)
    assert list(result) == keys
    assert result == {("x", 1): 43, "d": 4, "nested": 6, "alias": 4, "a": 1}


def test_block_false_returns_futures(client: Client) -> None:
    futures = client.get({"a": (slow, 0.1, 5), "b": (inc, "a")}, ["b", "a"], block=False)
    assert list(futures) == ["b", "a"]
    assert all(isinstance(future, ScalerFuture) for future in futures.values())
    assert futures["b"].result(timeout=30) == 6 and futures["a"].result(timeout=30) == 5


def test_a_wide_graph_runs_in_parallel_and_culls(client: Client) -> None:
    graph: dict[object, object] = {("leaf", i): (slow, 0.3, i) for i in range(4)}
    graph["total"] = (add, *[("leaf", i) for i in range(4)])
    graph["never"] = (slow, 60, None)
    start = time.monotonic()
    assert client.get(graph, ["total"]) == {"total": 6}
    assert time.monotonic() - start < 1.0 + 0.3 * 4  # two workers share the leaves; "never" never ran


def test_a_failing_node_fails_its_dependents_with_its_exception(client: Client) -> None:
    graph = {"a": 1, "bad": (fail, "a"), "after": (inc, "bad"), "fine": (inc, "a")}
    futures = client.get(graph, ["after", "fine"], block=False)
    with pytest.raises(ArithmeticError, match="node failed on 1") as caught:
        futures["after"].result(timeout=30)
    assert isinstance(caught.value.__cause__, RemoteTraceback)
    assert futures["fine"].result(timeout=30) == 2
    with pytest.raises(ArithmeticError):
        client.get(graph, ["after"])


def test_cancelling_one_future_cancels_the_graph(client: Client) -> None:
    graph = {"a": (slow, 60, 1), "b": (inc, "a"), "c": (slow, 60, 2)}
    futures = client.get(graph, ["b", "c"], block=False)
    time.sleep(0.3)
    assert futures["b"].cancel(timeout=10) is True
    concurrent.futures.wait(list(futures.values()), timeout=10)
    assert all(future.cancelled() for future in futures.values())
    assert client.submit(inc, 1).result(timeout=10) == 2  # the workers are free again


def test_invalid_graphs_fail_before_sending(client: Client) -> None:
    with pytest.raises(KeyError):
        client.get({"a": 1}, ["missing"])
    with pytest.raises(KeyError):
        client.get({"a": 1}, ["a", "a"])
    with pytest.raises(graphlib.CycleError):
        client.get({"a": (inc, "b"), "b": (inc, "a")}, ["a"])
    assert client.statistics()["pending"] == 0
    assert client.get({"a": 1}, ["a"]) == {"a": 1}


def test_object_references_and_big_values_in_graphs(client: Client) -> None:
    reference = client.send_object(list(range(1000)))
    big = list(range(100_000))
    graph = {"stored": reference, "big": big, "n": (len, "big"), "s": (sum, "stored"), "both": (add, "n", "s")}
    assert client.get(graph, ["both", "stored"]) == {"both": 100_000 + 499_500, "stored": list(range(1000))}


def test_intermediate_results_do_not_come_back_to_the_client(client: Client) -> None:
    graph = {"huge": (bytes, 50_000_000), "size": (len, "huge")}
    start = time.monotonic()
    assert client.get(graph, ["size"]) == {"size": 50_000_000}
    assert time.monotonic() - start < 20


def test_many_small_graphs(client: Client) -> None:
    futures = [client.get({"a": i, "b": (inc, "a")}, ["b"], block=False)["b"] for i in range(200)]
    assert [future.result(timeout=60) for future in futures] == [i + 1 for i in range(200)]
