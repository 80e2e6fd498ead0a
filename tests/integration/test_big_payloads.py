"""Big payloads end to end on a real scheduler and workers (loopback): out-of-band frames on every hop.

Arguments and results of a MiB and more, bytes and NumPy arrays, must come back identical,
whatever serializer the client uses: the default one gets zero-copy buffers, a user's
``Serializer`` written for ``bytes`` still gets ``bytes``.
"""

from __future__ import annotations

import collections.abc
import hashlib
import sys
from typing import Any

import cloudpickle
import numpy as np
import pytest

from scaler import Client, SchedulerClusterCombo, Serializer

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import the tests package

MIB = 1024 * 1024


def digest(value: Any) -> str:
    """A task: the hash of its argument's bytes, and the argument's type."""
    data = value.tobytes() if isinstance(value, np.ndarray) else value
    return f"{type(value).__name__}:{hashlib.sha256(data).hexdigest()}"


def echo(value: Any) -> Any:
    """A task: its argument, as the result."""
    return value


def make_array(size: int, seed: int) -> np.ndarray:
    """A task: a big NumPy result."""
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)


class BytesOnlySerializer(Serializer):
    """A user serializer written for ``bytes``: it uses ``bytes`` methods a buffer lacks."""

    def serialize(self, obj: Any) -> bytes:
        return b"B" + cloudpickle.dumps(obj)

    def deserialize(self, payload: bytes) -> Any:
        assert type(payload) is bytes, f"got a {type(payload).__name__}"
        assert payload.startswith(b"B")
        return cloudpickle.loads(payload[1:])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("size", [MIB, 3 * MIB + 17])
def test_big_bytes_and_arrays_travel_both_ways_identical(client: Client, size: int) -> None:
    rng = np.random.default_rng(size)
    array = rng.integers(0, 256, size, dtype=np.uint8).reshape(-1, 1) if size % 2 == 0 else rng.bytes(size)
    values = [rng.bytes(size), rng.integers(0, 256, size, dtype=np.uint8), np.arange(size // 8, dtype=np.float64)]
    values.append(array)
    for value in values:
        assert client.submit(digest, value).result(timeout=60) == digest(value)
        back = client.submit(echo, value).result(timeout=60)
        assert type(back) is type(value)
        if isinstance(value, np.ndarray):
            assert back.dtype == value.dtype and back.shape == value.shape
            np.testing.assert_array_equal(back, value)
        else:
            assert back == value
    results = [client.submit(make_array, size, seed) for seed in range(4)]
    for seed, future in enumerate(results):
        np.testing.assert_array_equal(future.result(timeout=60), make_array(size, seed))


@pytest.mark.timeout(120)
def test_many_big_arguments_at_once_come_back_in_order(client: Client) -> None:
    values = [bytes([index]) * MIB for index in range(20)]
    futures = [client.submit(echo, value) for value in values]
    assert [future.result(timeout=60) for future in futures] == values


@pytest.mark.timeout(120)
def test_a_big_object_is_sent_once_for_many_tasks(client: Client) -> None:
    value = np.random.default_rng(1).integers(0, 256, 2 * MIB, dtype=np.uint8)
    reference = client.send_object(value)
    before = client.statistics()
    expected = digest(value)
    assert [f.result(timeout=60) for f in [client.submit(digest, reference) for _ in range(10)]] == [expected] * 10
    after = client.statistics()
    changed = {key: (before[key], after[key]) for key in before if "object" in key and before[key] != after[key]}
    assert not changed, f"the object was sent again: {changed}"


def bump_and_sum(value: Any) -> tuple[int, bool]:
    """A task that changes its (writable) argument in place, then sums it; and whether it could write it."""
    if isinstance(value, np.ndarray):
        writable = bool(value.flags.writeable)
        if writable:
            value += 1
        return int(value.sum()), writable
    value[0] += 1
    return sum(value), True


def describe(value: Any) -> Any:
    """A task: the types and contents of a nested argument, as plain values."""
    if isinstance(value, dict):
        return {key: describe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value).__name__, [describe(item) for item in value]
    if isinstance(value, np.ndarray):
        return "ndarray", str(value.dtype), value.shape, bool(value.flags.writeable), value.tobytes()
    if isinstance(value, memoryview):
        return "memoryview", value.format, value.shape, value.readonly, value.tobytes()
    return type(value).__name__, value


@pytest.mark.timeout(120)
def test_nested_buffers_bytearrays_and_memoryviews_arrive_as_sent(client: Client) -> None:
    readonly = np.arange(MIB // 8, dtype=np.float64)
    readonly.flags.writeable = False
    value = {
        "bytes": b"\x01" * MIB,
        "arrays": [np.ones((512, 256)), readonly, bytearray(b"\x02" * MIB)],
        "view": memoryview(np.arange(MIB // 4, dtype=np.int32).reshape(-1, 64)),
        "small": (1, "two", b"three"),
    }
    expected = describe(value)
    assert client.submit(describe, value).result(timeout=60) == expected
    assert describe(client.submit(echo, value).result(timeout=60)) == expected


@pytest.mark.timeout(120)
def test_a_task_that_changes_its_big_argument_never_changes_the_next_ones(client: Client) -> None:
    array = np.zeros(MIB, dtype=np.uint8)
    data = bytearray(MIB)
    cases = [(array, MIB), (data, 1), (client.send_object(array), MIB), (client.send_object(data), 1)]
    for value, total in cases:
        # The same object (cached on the worker) reaches several tasks; each sees it as sent.
        results = [client.submit(bump_and_sum, value).result(timeout=60) for _ in range(4)]
        assert results == [(total, True)] * 4
    assert not array.any() and not any(data), "the client's own values are unchanged"


@pytest.fixture
def bytes_client(combo: SchedulerClusterCombo) -> collections.abc.Iterator[Client]:
    with Client(combo.get_address(), timeout_seconds=10, serializer=BytesOnlySerializer()) as connected:
        yield connected


@pytest.mark.timeout(120)
def test_a_user_serializer_gets_bytes_for_big_payloads(bytes_client: Client) -> None:
    value = b"\x05" * (2 * MIB)
    assert bytes_client.submit(digest, value).result(timeout=60) == digest(value)
    assert bytes_client.submit(echo, value).result(timeout=60) == value
    array = np.arange(MIB, dtype=np.int32)
    np.testing.assert_array_equal(bytes_client.submit(echo, array).result(timeout=60), array)
