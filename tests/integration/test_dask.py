"""``dask.compute(..., scheduler=client.get)`` on a real local cluster (2 workers)."""

from __future__ import annotations

import sys

import cloudpickle
import pytest

from scaler import Client

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import the tests package


@dask.delayed
def load(i: int) -> list[int]:
    return list(range(i))


@dask.delayed
def summarize(values: list[int]) -> int:
    return sum(values)


@dask.delayed
def explode(value: int) -> int:
    raise RuntimeError(f"exploded at {value}")


def test_dask_delayed(client: Client) -> None:
    parts = [summarize(load(i)) for i in range(10)]
    total = dask.delayed(sum)(parts)
    assert dask.compute(total, scheduler=client.get) == (sum(sum(range(i)) for i in range(10)),)
    assert total.compute(scheduler=client.get) == 120
    several = dask.compute(parts[3], {"total": total, "plain": 7}, [parts[1], parts[2]], scheduler=client.get)
    assert several == (3, {"total": 120, "plain": 7}, [0, 1])


def test_dask_delayed_errors_reach_the_caller(client: Client) -> None:
    with pytest.raises(RuntimeError, match="exploded at 3"):
        dask.compute(summarize([explode(3), summarize(load(2))]), scheduler=client.get)


def test_a_small_dask_array(client: Client) -> None:
    x = da.arange(100, chunks=10).reshape((10, 10)).rechunk((5, 5))
    y = (x * 2 + 1).T @ x
    (ours,) = dask.compute(y.sum(axis=0), scheduler=client.get)
    (theirs,) = dask.compute(y.sum(axis=0), scheduler="sync")
    assert ours.tolist() == theirs.tolist()
    assert float(x.mean().compute(scheduler=client.get)) == 49.5
    assert (da.ones((6, 6), chunks=3) + 1).compute(scheduler=client.get).tolist() == [[2.0] * 6] * 6


def test_the_client_itself_or_dask_config_can_name_the_scheduler(client: Client) -> None:
    assert summarize(load(4)).compute(scheduler=client) == 6
    with dask.config.set(scheduler=client.get):
        assert summarize(load(5)).compute() == 10


def test_persist_brings_the_chunks_back(client: Client) -> None:
    x = (da.arange(12, chunks=4) * 3).persist(scheduler=client.get)
    assert x.sum().compute(scheduler="sync") == 3 * 66


def test_a_dask_array_from_a_numpy_array_sends_its_chunks_as_objects(client: Client) -> None:
    numpy = pytest.importorskip("numpy")
    values = numpy.arange(160_000, dtype=numpy.float64).reshape((400, 400))  # 1.2 MiB, 4 chunks of 320 KiB
    x = da.from_array(values, chunks=(100, 400))
    before = client.statistics()["objects_created"]
    assert float((x * 2).sum().compute(scheduler=client.get)) == float(values.sum() * 2)
    assert client.statistics()["objects_created"] - before == 4
