"""Graph planning (validation, culling, arguments) and evaluation, with no cluster.

``run_locally`` plays the scheduler and the workers: it runs each planned node in order through
the same encode/decode path a worker uses (``GraphSerializer`` + ``run_graph_node``).
"""

from __future__ import annotations

import graphlib
import operator
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaler.client.graph import Dependency, Literal, dask_graph, flatten_keys, pack_results, plan_graph
from scaler.client.graph_runner import (
    EXPRESSION_MAGIC,
    Arg,
    Call,
    DictOf,
    GraphSerializer,
    ListOf,
    TupleOf,
    encode_expression,
    run_graph_node,
)
from scaler.client.object_reference import ObjectReference
from scaler.client.serializer import DefaultSerializer, Serializer


def inc(x: int) -> int:
    return x + 1


def add(*values: int) -> int:
    return sum(values)


def run_locally(graph: Any, keys: list[Any], serializer: Serializer | None = None) -> dict[Any, Any]:
    """Run a plan node by node, serializing every argument and result as the cluster would."""
    wrapper = GraphSerializer(serializer or DefaultSerializer())
    plan = plan_graph(graph, keys)
    stored: dict[Any, bytes] = {}  # key -> serialized result, as the scheduler keeps it
    memo: dict[Any, bytes] = {}  # as the client's encoder keeps it for one graph
    for node in plan.nodes:
        values = []
        for argument in node.arguments:
            if isinstance(argument, Dependency):
                values.append(wrapper.deserialize(stored[argument.key]))
            else:
                values.append(wrapper.deserialize(wrapper.inner.serialize(argument.value)))
        expression = wrapper.deserialize(encode_expression(node.expression, memo))
        stored[node.key] = wrapper.serialize(run_graph_node(expression, *values))
    return {key: wrapper.inner.deserialize(stored[key]) for key in plan.targets}


# -- validation ---------------------------------------------------------------------------------------


def test_missing_key_raises_key_error() -> None:
    with pytest.raises(KeyError, match="'nope' is not in the graph"):
        plan_graph({"a": 1}, ["nope"])


def test_duplicate_key_raises_key_error() -> None:
    with pytest.raises(KeyError, match="asked for twice"):
        plan_graph({"a": 1}, ["a", "a"])


def test_unhashable_key_raises_key_error() -> None:
    with pytest.raises(KeyError, match="hashable"):
        plan_graph({"a": 1}, [["a"]])


@pytest.mark.parametrize(
    "graph",
    [
        {"a": (inc, "b"), "b": (inc, "a")},
        {"a": (inc, "a")},
        {"a": "b", "b": "a"},
        {"a": (inc, "b"), "b": (add, "c", 1), "c": (inc, [("a")])},
    ],
    ids=["two", "self", "aliases", "through-a-list"],
)
def test_cycle_raises_cycle_error(graph: dict[str, Any]) -> None:
    with pytest.raises(graphlib.CycleError):
        plan_graph(graph, ["a"])


def test_a_cycle_outside_what_the_keys_need_is_culled_away() -> None:
    graph = {"a": 1, "b": (inc, "a"), "x": (inc, "y"), "y": (inc, "x")}
    assert run_locally(graph, ["b"]) == {"b": 2}


# -- culling and order -------------------------------------------------------------------------------


def test_culls_to_what_the_keys_need_in_dependency_order() -> None:
    graph = {"a": 1, "b": (inc, "a"), "c": (add, "b", "a"), "unused": (inc, "c"), "other": 5}
    plan = plan_graph(graph, ["c"])
    order = [node.key for node in plan.nodes]
    assert sorted(order) == ["a", "b", "c"]
    assert order.index("a") < order.index("b") < order.index("c")
    assert plan.targets == ["c"]


def test_targets_keep_the_order_asked() -> None:
    graph = {"a": 1, "b": (inc, "a"), "c": (inc, "b")}
    assert plan_graph(graph, ["c", "a", "b"]).targets == ["c", "a", "b"]


def test_empty_keys_plan_nothing() -> None:
    plan = plan_graph({"a": 1}, [])
    assert plan.nodes == [] and plan.targets == []


# -- arguments ---------------------------------------------------------------------------------------


def test_a_key_used_twice_is_one_dependency() -> None:
    plan = plan_graph({"a": 2, "b": (operator.mul, "a", "a")}, ["b"])
    (node,) = [node for node in plan.nodes if node.key == "b"]
    assert node.dependencies == ["a"]
    assert node.arguments == [Dependency("a")]


def test_small_scalars_stay_in_the_expression_and_data_becomes_literal_arguments() -> None:
    data = list(range(100))
    plan = plan_graph({"x": data, "y": (add, 1, 2.5, "short text"), "z": (len, data)}, ["x", "y", "z"])
    by_key = {node.key: node for node in plan.nodes}
    assert by_key["x"].arguments == [Literal(data)]
    assert by_key["y"].arguments == []
    assert by_key["z"].arguments == [Literal(data)]


def test_object_references_become_arguments_wherever_they_are() -> None:
    reference = ObjectReference(b"\x01" * 16, "blob", 10)
    plan = plan_graph({"r": reference, "s": (len, [reference, "r"])}, ["r", "s"])
    by_key = {node.key: node for node in plan.nodes}
    assert by_key["r"].arguments == [Literal(reference)]
    assert Literal(reference) in by_key["s"].arguments
    assert Dependency("r") in by_key["s"].arguments


def test_pure_literal_containers_are_one_argument() -> None:
    plan = plan_graph({"a": (sum, [1, 2, 3])}, ["a"])
    assert plan.nodes[0].arguments == [Literal([1, 2, 3])]


# -- evaluation --------------------------------------------------------------------------------------


def test_tuple_keys_nested_tasks_lists_tuples_and_dicts() -> None:
    graph = {
        ("x", 0): 1,
        ("x", 1): 2,
        "sum": (add, ("x", 0), ("x", 1)),
        "nested": (add, (inc, ("x", 0)), (inc, (inc, "sum"))),
        "listed": (sum, [("x", 0), ("x", 1), (inc, "sum")]),
        "tupled": (list, (("x", 1), "sum")),
        "dicted": (dict, {"left": ("x", 0), "right": [("x", 1), "sum"]}),
        "alias": "sum",
    }
    keys = ["sum", "nested", "listed", "tupled", "dicted", "alias", ("x", 1)]
    assert run_locally(graph, keys) == {
        "sum": 3,
        "nested": 2 + 5,
        "listed": 1 + 2 + 4,
        "tupled": [2, 3],
        "dicted": {"left": 1, "right": [2, 3]},
        "alias": 3,
        ("x", 1): 2,
    }


def test_strings_that_are_not_keys_stay_strings() -> None:
    assert run_locally({"a": (operator.add, "not a key", "!")}, ["a"]) == {"a": "not a key!"}


def test_data_values_come_back_unchanged() -> None:
    data = {"nested": [1, 2, (3, 4)], "text": "x" * 1000}
    assert run_locally({"d": data, "n": None, "t": (1, 2)}, ["d", "n", "t"]) == {"d": data, "n": None, "t": (1, 2)}


def test_a_failing_task_raises_its_exception() -> None:
    with pytest.raises(ZeroDivisionError):
        run_locally({"a": 0, "b": (operator.truediv, 1, "a")}, ["b"])


class TaggingSerializer(Serializer):
    """Counts what it serializes and marks its bytes, to show which data goes through it."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def serialize(self, obj: Any) -> bytes:
        self.seen.append(obj)
        return b"TAG" + pickle.dumps(obj)

    def deserialize(self, payload: bytes) -> Any:
        assert payload[:3] == b"TAG"
        return pickle.loads(payload[3:])


def test_data_goes_through_the_client_serializer_and_structure_does_not() -> None:
    serializer = TaggingSerializer()
    data = [1, 2, 3]
    assert run_locally({"d": data, "s": (sum, "d")}, ["s"], serializer) == {"s": 6}
    assert data in serializer.seen
    assert not any(callable(value) for value in serializer.seen)


def test_graph_serializer_recognizes_expressions_only_by_their_prefix() -> None:
    wrapper = GraphSerializer(DefaultSerializer())
    assert wrapper.deserialize(encode_expression((1, "x"))) == (1, "x")
    assert wrapper.deserialize(pickle.dumps(b"plain")) == b"plain"
    assert not pickle.dumps(object).startswith(EXPRESSION_MAGIC)


# -- expression memo (client) and cache (worker) ---------------------------------------------------


def test_nodes_of_one_shape_are_pickled_once_per_graph() -> None:
    graph = {f"x{i}": (inc, i) for i in range(50)} | {f"y{i}": (add, f"x{i}", f"x{i + 1}") for i in range(49)}
    plan = plan_graph(graph, [f"y{i}" for i in range(49)])
    memo: dict[Any, bytes] = {}
    encoded = [encode_expression(node.expression, memo) for node in plan.nodes]
    assert len(memo) == 1 + 50  # one add(Arg 0, Arg 1) for all 49 adds; each inc carries its own i
    assert encoded == [encode_expression(node.expression) for node in plan.nodes]
    assert run_locally(graph, ["y0", "y48"]) == {"y0": 3, "y48": 99}


# Leaves that compare equal across types (1 == 1.0 == True, 0.0 == -0.0), so that random lists hold twins.
LEAVES = st.sampled_from([0, 0.0, -0.0, False, 1, 1.0, True, None, ""])
EXPRESSIONS = st.recursive(
    LEAVES | st.integers(0, 3).map(Arg),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(lambda items: Call(add, tuple(items))),
        st.lists(inner, max_size=3).map(lambda items: ListOf(tuple(items))),
        st.lists(inner, max_size=3).map(lambda items: TupleOf(tuple(items))),
        st.lists(inner, max_size=3).map(lambda items: DictOf(tuple(range(len(items))), tuple(items))),
    ),
    max_leaves=8,
)


def exactly(value: Any) -> Any:
    """A value with every leaf's type spelled out: 1, 1.0 and True differ here, as do 0.0 and -0.0."""
    if isinstance(value, ListOf | TupleOf):
        return (type(value).__name__, [exactly(item) for item in value.items])
    if isinstance(value, DictOf):
        return ("DictOf", value.keys, [exactly(item) for item in value.values])
    if isinstance(value, Call):
        return ("Call", value.func, [exactly(item) for item in value.args])
    if isinstance(value, Arg):
        return ("Arg", value.index)
    return (type(value).__name__, repr(value))


@given(st.lists(EXPRESSIONS, min_size=1, max_size=12))
def test_the_memo_never_confuses_expressions_that_merely_compare_equal(expressions: list[Any]) -> None:
    memo: dict[Any, bytes] = {}
    wrapper = GraphSerializer(DefaultSerializer())
    for expression in expressions:
        decoded = wrapper.deserialize(encode_expression(expression, memo))
        assert exactly(decoded) == exactly(expression)


def test_twins_that_compare_equal_get_their_own_bytes() -> None:
    memo: dict[Any, bytes] = {}
    wrapper = GraphSerializer(DefaultSerializer())
    twins = [1, 1.0, True, 0, 0.0, -0.0, False, "1", b"1"]
    for leaf in twins + [Call(add, (Arg(0), leaf)) for leaf in twins]:
        assert exactly(wrapper.deserialize(encode_expression(leaf, memo))) == exactly(leaf)


class Counter:
    """A callable that keeps state between calls: each node must get its own copy, as without a cache."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, x: int) -> int:
        self.calls += 1
        return self.calls


def test_stateful_callables_are_neither_memoized_nor_shared_between_nodes() -> None:
    counter = Counter()
    graph = {f"n{i}": (counter, i) for i in range(5)}
    assert run_locally(graph, list(graph)) == {f"n{i}": 1 for i in range(5)}


def test_the_worker_cache_is_its_own_bounded_and_not_pickled() -> None:
    wrapper = GraphSerializer(DefaultSerializer())
    wrapper.CACHE_SIZE = 3
    payloads = [encode_expression(Call(add, (Arg(0), i))) for i in range(5)]
    first = wrapper.deserialize(payloads[0])
    assert wrapper.deserialize(payloads[0]) is first  # decoded once, shared: nothing in it holds state
    for payload in payloads:
        wrapper.deserialize(payload)
    assert len(wrapper._expressions) <= 3
    copy = pickle.loads(pickle.dumps(wrapper))
    assert copy._expressions == {} and isinstance(copy.inner, DefaultSerializer)


# -- dask --------------------------------------------------------------------------------------------


def test_dask_delayed_graphs_evaluate_like_dask() -> None:
    dask = pytest.importorskip("dask")

    @dask.delayed
    def double(x: int) -> int:
        return 2 * x

    total = dask.delayed(sum)([double(i) for i in range(5)])
    expected = dask.compute(total, scheduler="sync")
    captured: dict[str, Any] = {}

    def scheduler(graph: Any, keys: Any, **_: Any) -> Any:
        mapping = dask_graph(graph)
        assert mapping is not None
        captured["keys"] = keys
        return pack_results(keys, run_locally(mapping, flatten_keys(keys)))

    assert dask.compute(total, scheduler=scheduler) == expected
    assert isinstance(captured["keys"], list)


def test_dask_array_graph_evaluates_like_dask() -> None:
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")
    array = da.arange(24, chunks=5).reshape((4, 6)).rechunk((2, 3))
    expression = (array * 2 + 1).sum(axis=0)

    def scheduler(graph: Any, keys: Any, **_: Any) -> Any:
        mapping = dask_graph(graph)
        assert mapping is not None
        return pack_results(keys, run_locally(mapping, flatten_keys(keys)))

    (ours,) = dask.compute(expression, scheduler=scheduler)
    (theirs,) = dask.compute(expression, scheduler="sync")
    assert ours.tolist() == theirs.tolist()


def test_dask_task_spec_nodes_are_read_directly() -> None:
    pytest.importorskip("dask")
    from dask._task_spec import Alias, DataNode, Task, TaskRef

    graph = {
        "data": DataNode("data", [1, 2, 3]),
        "total": Task("total", sum, TaskRef("data")),
        "more": Task("more", operator.add, TaskRef("total"), 10),
        "alias": Alias("alias", "more"),
    }
    assert run_locally(graph, ["alias", "total"]) == {"alias": 16, "total": 6}
    with pytest.raises(KeyError, match="missing"):
        plan_graph({"t": Task("t", inc, TaskRef("missing"))}, ["t"])
    with pytest.raises(graphlib.CycleError):
        plan_graph({"a": Alias("a", "b"), "b": Task("b", inc, TaskRef("a"))}, ["a"])


def test_flatten_and_pack_follow_dask_nesting() -> None:
    keys = [["a", ("b", 0)], "c", ["a"]]
    assert flatten_keys(keys) == ["a", ("b", 0), "c"]
    assert pack_results(keys, {"a": 1, ("b", 0): 2, "c": 3}) == ((1, 2), 3, (1,))
    assert pack_results("a", {"a": 1}) == 1


def test_dask_graph_is_none_for_plain_dicts() -> None:
    assert dask_graph({"a": 1}, ["a"]) is None
    assert dask_graph({("a", 0): 1}, [("a", 0)]) is None
    assert dask_graph([1, 2], [1]) is None


def test_dask_graph_recognizes_dask_calls() -> None:
    pytest.importorskip("dask")
    from dask.highlevelgraph import HighLevelGraph

    graph = {"a": 1}
    assert dask_graph(graph, [["a"]]) is graph  # dask's nested keys
    high_level = HighLevelGraph.from_collections("a", graph)
    assert dask_graph(high_level, ["a"]) is high_level
