"""Where each task's time and memory went (``Client(profiling=True)``, ``task_report``), on a real cluster."""

from __future__ import annotations

import collections.abc
import csv
import pathlib
import sys
import time

import cloudpickle
import pytest

from scaler import Client, SchedulerClusterCombo

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import the tests package

MB = 1_000_000


def nap(seconds: float) -> str:
    time.sleep(seconds)
    return "rested"


def one_megabyte() -> bytes:
    return b"x" * MB


def hold_memory(megabytes: int) -> int:
    block = bytearray(megabytes * 1024 * 1024)
    block[::4096] = b"\x01" * len(block[::4096])  # touch every page, so it is resident
    return len(block)


def fail() -> None:
    raise RuntimeError("on purpose")


@pytest.fixture(scope="module")
def one_worker() -> collections.abc.Iterator[SchedulerClusterCombo]:
    """One worker, so tasks queue behind each other."""
    with SchedulerClusterCombo(n_workers=1, logging_level="WARNING") as cluster:
        yield cluster


@pytest.fixture
def profiling_client(one_worker: SchedulerClusterCombo) -> collections.abc.Iterator[Client]:
    with Client(one_worker.get_address(), timeout_seconds=10, profiling=True) as connected:
        yield connected


def test_profiling_info_has_each_cost(profiling_client: Client) -> None:
    sleeper = profiling_client.submit(nap, 0.2)
    big = profiling_client.submit(one_megabyte)
    hog = profiling_client.submit(hold_memory, 50)
    assert sleeper.result(timeout=30) == "rested"
    assert len(big.result(timeout=30)) == MB
    assert hog.result(timeout=30) == 50 * 1024 * 1024

    slept = sleeper.profiling_info()
    assert 0.2 <= slept.duration_s < 5
    assert slept.cpu_time_s < 0.15  # sleeping costs no CPU
    assert slept.load_s >= 0 and slept.serialize_s >= 0
    assert big.profiling_info().result_bytes >= MB
    assert big.profiling_info().serialize_s >= 0
    assert hog.profiling_info().memory_peak >= 50 * 1024 * 1024
    for future in (sleeper, big, hog):  # measured by the scheduler
        info = future.profiling_info()
        assert 0 < info.transfer_s <= info.queue_wait_s < 30


def test_queue_wait_of_tasks_behind_a_busy_worker(profiling_client: Client) -> None:
    futures = [profiling_client.submit(nap, 0.3) for _ in range(6)]  # the one worker runs them one by one
    for future in futures:
        future.result(timeout=30)
    infos = [future.profiling_info() for future in futures]
    assert all(info.queue_wait_s > 0 and 0 < info.transfer_s <= info.queue_wait_s for info in infos)
    assert infos[-1].queue_wait_s >= 0.3 * 4  # at least four 0.3 s tasks ran before the last one started


def test_task_report_and_its_csv(profiling_client: Client, tmp_path: pathlib.Path) -> None:
    done = profiling_client.submit(nap, 0.2)
    failed = profiling_client.submit(fail)
    cancelled = profiling_client.submit(nap, 30)
    graph = profiling_client.get({"a": (nap, 0.05), "b": (len, "a")}, ["b"], block=False)
    assert cancelled.cancel(timeout=10)
    assert done.result(timeout=30) == "rested" and graph["b"].result(timeout=30) == 6
    with pytest.raises(RuntimeError):
        failed.result(timeout=30)

    path = tmp_path / "tasks.csv"
    futures = [done, failed, cancelled, graph["b"]]
    rows = profiling_client.task_report(futures, csv_path=path)
    assert [(row.function, row.status) for row in rows] == [
        (f"{__name__}.nap", "success"),
        (f"{__name__}.fail", "failed"),
        (f"{__name__}.nap", "cancelled"),
        ("builtins.len", "success"),
    ]
    assert [row.task_id for row in rows] == [future.task_id.hex() for future in futures]
    first = rows[0]
    assert first.run_s is not None and first.run_s >= 0.2
    assert first.memory_peak is not None and first.memory_peak > 0
    assert first.result_bytes is not None and first.result_bytes > 0
    assert rows[2].run_s is None  # a cancelled task has no figures

    with open(path, newline="", encoding="utf-8") as source:
        read = list(csv.DictReader(source))
    assert [row["task_id"] for row in read] == [row.task_id for row in rows]
    assert [row["status"] for row in read] == ["success", "failed", "cancelled", "success"]
    assert float(read[0]["run_s"]) == first.run_s
    assert int(read[0]["memory_peak"]) == first.memory_peak
    assert read[2]["run_s"] == ""


def test_task_report_without_profiling(one_worker: SchedulerClusterCombo) -> None:
    with Client(one_worker.get_address(), timeout_seconds=10) as client:
        future = client.submit(nap, 0.01)
        future.result(timeout=30)
        (row,) = client.task_report([future])
    assert (row.function, row.status, row.run_s, row.queue_wait_s) == (f"{__name__}.nap", "success", None, None)
