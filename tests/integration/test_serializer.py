"""A custom ``Serializer`` carries arguments, objects, graph values and results on a real cluster."""

from __future__ import annotations

import collections.abc
import json
import pickle
import sys
from typing import Any

import cloudpickle
import pytest

from scaler import Client, SchedulerClusterCombo, Serializer

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import the tests package


class Point:
    """A value the custom serializer writes as JSON; ``via`` records which serializer rebuilt it."""

    def __init__(self, x: Any, y: Any) -> None:
        self.x, self.y = x, y
        self.via = "constructor"


class PointSerializer(Serializer):
    """JSON for ``Point`` (tagged ``P``), pickle for everything else (tagged ``O``)."""

    def serialize(self, obj: Any) -> bytes:
        if isinstance(obj, Point):
            return b"P" + json.dumps([obj.x, obj.y]).encode()
        return b"O" + cloudpickle.dumps(obj)

    def deserialize(self, payload: bytes) -> Any:
        tag, body = bytes(payload[:1]), payload[1:]
        if tag == b"P":
            point = Point(*json.loads(bytes(body)))
            point.via = "PointSerializer"
            return point
        assert tag == b"O", f"not written by PointSerializer: {bytes(payload[:16])!r}"
        return pickle.loads(body)


def inspect(point: Point) -> tuple[str, Any]:
    return point.via, point.x


def shift(point: Point, dx: int) -> Point:
    return Point(point.x + dx, point.y)


def length_of_x(point: Point) -> int:
    return len(point.x)


@pytest.fixture
def custom_client(combo: SchedulerClusterCombo) -> collections.abc.Iterator[Client]:
    with Client(combo.get_address(), timeout_seconds=10, serializer=PointSerializer()) as connected:
        yield connected


def test_arguments_and_results(custom_client: Client) -> None:
    assert custom_client.submit(inspect, Point(1, 2)).result(timeout=30) == ("PointSerializer", 1)
    shifted = custom_client.submit(shift, Point(1, 2), 10).result(timeout=30)
    assert (shifted.via, shifted.x, shifted.y) == ("PointSerializer", 11, 2)
    assert custom_client.map(inspect, [Point(5, 0)]) == [("PointSerializer", 5)]


def test_objects_and_big_arguments(custom_client: Client) -> None:
    reference = custom_client.send_object(Point(7, 8))
    assert custom_client.submit(inspect, reference).result(timeout=30) == ("PointSerializer", 7)
    big = Point(list(range(30_000)), 0)  # over 64 KiB serialized: travels as an automatic object
    assert custom_client.submit(length_of_x, big).result(timeout=30) == 30_000


def test_graph_values_and_results(custom_client: Client) -> None:
    graph = {
        "p": Point(1, 1),
        "q": (shift, "p", 2),
        "via": (inspect, "q"),
        "stored": custom_client.send_object(Point(3, 3)),
    }
    result = custom_client.get(graph, ["via", "q", "p", "stored"])
    assert result["via"] == ("PointSerializer", 3)
    assert (result["q"].via, result["q"].x) == ("PointSerializer", 3)
    assert (result["p"].via, result["p"].x) == ("PointSerializer", 1)
    assert (result["stored"].via, result["stored"].x) == ("PointSerializer", 3)


def test_the_serializer_class_can_be_given(combo: SchedulerClusterCombo) -> None:
    with Client(combo.get_address(), timeout_seconds=10, serializer=PointSerializer) as client:
        assert client.submit(inspect, Point(4, 4)).result(timeout=30) == ("PointSerializer", 4)
