"""Profiling (``Client(profiling=True)``) and task options (``submit_verbose``) on a real cluster."""

from __future__ import annotations

import collections.abc
import os
import sys
import time

import cloudpickle
import pytest

from scaler import Client, Cluster, ProfileResult, SchedulerClusterCombo

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import the tests package


def busy(seconds: float) -> int:
    """Burn ``seconds`` of CPU time and hold 20 MiB meanwhile."""
    hold = bytearray(20 * 1024 * 1024)
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass
    return len(hold)


def sleep_return(seconds: float, value: object) -> object:
    time.sleep(seconds)
    return value


def inc(x: int) -> int:
    return x + 1


@pytest.fixture
def profiling_client(combo: SchedulerClusterCombo) -> collections.abc.Iterator[Client]:
    with Client(combo.get_address(), timeout_seconds=10, profiling=True) as connected:
        yield connected


def test_profiling_info_of_a_task(profiling_client: Client) -> None:
    future = profiling_client.submit(busy, 0.3)
    with pytest.raises(ValueError, match="not finished"):
        future.profiling_info()
    assert future.result(timeout=30) == 20 * 1024 * 1024
    info = future.profiling_info()
    assert isinstance(info, ProfileResult)
    assert 0.25 <= info.duration_s < 30
    assert 0.25 <= info.cpu_time_s < 30
    assert info.memory_peak >= 20 * 1024 * 1024


def test_profiling_info_of_graph_targets(profiling_client: Client) -> None:
    futures = profiling_client.get({"a": (sleep_return, 0.2, 1), "b": (inc, "a")}, ["a", "b"], block=False)
    assert futures["b"].result(timeout=30) == 2
    assert futures["a"].profiling_info().duration_s >= 0.15
    assert futures["b"].profiling_info().duration_s < 1


def test_without_profiling_profiling_info_raises(client: Client) -> None:
    future = client.submit(inc, 1)
    assert future.result(timeout=30) == 2
    with pytest.raises(ValueError, match="profiling=True"):
        future.profiling_info()


# -- task options ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_worker() -> collections.abc.Iterator[SchedulerClusterCombo]:
    with SchedulerClusterCombo(n_workers=1, per_worker_queue_size=1, logging_level="WARNING") as cluster:
        yield cluster


def test_higher_priority_runs_first(one_worker: SchedulerClusterCombo) -> None:
    with Client(one_worker.get_address(), timeout_seconds=10) as client:
        blockers = [client.submit(sleep_return, 0.5, None) for _ in range(2)]  # fill the worker's slots
        time.sleep(0.2)
        order: list[int] = []
        futures = [client.submit_verbose(sleep_return, (0.01, p), {}, priority=p) for p in (0, 5, 1, 9)]
        for future in futures:
            future.add_done_callback(lambda f: order.append(f.result()))
        for future in blockers + futures:
            future.result(timeout=30)
        assert order == [9, 5, 1, 0]


def worker_tag() -> str | None:
    return os.environ.get("SCALER_TEST_WORKER_TAG")


def test_capabilities_pick_the_workers(
    combo: SchedulerClusterCombo, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCALER_TEST_WORKER_TAG", "gpu")  # inherited by the worker started below only
    gpu_worker = Cluster(combo.get_address(), 1, per_worker_capabilities={"gpu": 1}, logging_level="WARNING")
    gpu_worker.start()
    monkeypatch.delenv("SCALER_TEST_WORKER_TAG")
    try:
        futures = [client.submit_verbose(worker_tag, (), {}, capabilities={"gpu": 1}) for _ in range(20)]
        assert {future.result(timeout=30) for future in futures} == {"gpu"}
    finally:
        gpu_worker.shutdown()
