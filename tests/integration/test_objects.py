"""Objects end to end: ``send_object``, big arguments, big results kept on the scheduler, ``clear``.

The scheduler runs in this process (on a thread) so the tests can count the objects it holds;
its two workers are real processes. It keeps results over 64 KiB until the client fetches them.
"""

from __future__ import annotations

import asyncio
import collections.abc
import concurrent.futures
import gc
import sys
import threading
import time
import types
from typing import Any

import cloudpickle
import pytest

from scaler import Client, Cluster, MissingObjects, ObjectReference, TaskRejectedError
from scaler.io.sockets import free_tcp_address
from scaler.scheduler import server as server_module
from scaler.scheduler.server import SchedulerServer
from scaler.scheduler.state import SchedulerConfig

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import the tests package

BIG = 200_000  # bytes: over the 64 KiB inline limit for arguments and results


class InProcessScheduler:
    """A real scheduler served from a thread of the test process, and two worker processes."""

    def __init__(self) -> None:
        self.address = free_tcp_address()
        self.server = SchedulerServer(self.address, SchedulerConfig(inline_result_bytes=64 * 1024))
        self.cluster = Cluster(self.address, 2, logging_level="WARNING")

    def objects(self) -> int:
        return len(self.server.state.objects)

    def wait_objects(self, expected: int, timeout: float = 10.0) -> int:
        """Wait until the scheduler holds ``expected`` objects (it applies messages asynchronously)."""
        deadline = time.monotonic() + timeout
        while self.objects() != expected and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.objects()

    def client(self, **options: Any) -> Client:
        return Client(self.address, timeout_seconds=10, **options)


@pytest.fixture(scope="module")
def scheduler() -> collections.abc.Iterator[InProcessScheduler]:
    running = InProcessScheduler()
    # Signal handlers can only be set on the main thread; this scheduler is stopped with stop().
    no_signals = types.SimpleNamespace(signal=lambda *_: None, SIGTERM=None, SIGINT=None)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(server_module, "signal", no_signals)
        thread = threading.Thread(target=running.server.run, daemon=True, name="test-scheduler")
        thread.start()
        running.cluster.start()
        try:
            yield running
        finally:
            running.cluster.shutdown()
            running.server.stop()
            thread.join(10)


@pytest.fixture
def client(scheduler: InProcessScheduler) -> collections.abc.Iterator[Client]:
    with scheduler.client() as connected:
        yield connected
    assert scheduler.wait_objects(0) == 0, "a client's objects outlived it"


def total(values: list[int]) -> int:
    return sum(values)


def describe(value: Any) -> tuple[str, int]:
    return type(value).__name__, len(value)


def make_bytes(size: int) -> bytes:
    return b"r" * size


# -- send_object -------------------------------------------------------------------------------------------


def test_a_task_gets_the_stored_object(client: Client) -> None:
    reference = client.send_object(list(range(100)), name="numbers")
    assert isinstance(reference, ObjectReference) and reference.name == "numbers"
    assert client.submit(total, reference).result(timeout=30) == sum(range(100))
    assert client.submit(describe, value=reference).result(timeout=30) == ("list", 100)
    assert client.map(total, [reference, reference]) == [4950, 4950]
    assert client.starmap(describe, [(reference,)]) == [("list", 100)]


def test_identical_content_is_stored_once(scheduler: InProcessScheduler, client: Client) -> None:
    first = client.send_object({"same": [1, 2, 3]})
    second = client.send_object({"same": [1, 2, 3]})
    assert first == second
    assert scheduler.wait_objects(1) == 1
    client.send_object({"other": 1})
    assert scheduler.wait_objects(2) == 2
    assert client.statistics()["objects_created"] == 2


def test_clear_drops_every_object(scheduler: InProcessScheduler, client: Client) -> None:
    reference = client.send_object("kept")
    client.submit(len, b"x" * BIG).result(timeout=30)
    assert scheduler.wait_objects(2) == 2
    client.clear()
    assert scheduler.wait_objects(0) == 0
    with pytest.raises(TaskRejectedError, match="unknown") as rejected:
        client.submit(len, reference).result(timeout=30)
    assert isinstance(rejected.value, MissingObjects)  # Scaler's name for it
    assert client.submit(len, client.send_object("again")).result(timeout=30) == 5


def test_disconnect_frees_everything(scheduler: InProcessScheduler) -> None:
    with scheduler.client() as leaving:
        leaving.send_object("one")
        leaving.submit(len, b"y" * BIG).result(timeout=30)
        assert scheduler.wait_objects(2) == 2
    assert scheduler.wait_objects(0) == 0


# -- big arguments -------------------------------------------------------------------------------------------


def test_a_big_argument_is_uploaded_once_for_many_tasks(scheduler: InProcessScheduler, client: Client) -> None:
    big = b"b" * BIG
    futures = [client.submit(len, big) for _ in range(100)]
    assert [future.result(timeout=60) for future in futures] == [BIG] * 100
    assert client.statistics()["objects_created"] == 1
    assert scheduler.wait_objects(1) == 1


def test_a_long_running_loop_does_not_grow_the_scheduler_store(scheduler: InProcessScheduler) -> None:
    limit = 4 * BIG
    with scheduler.client(object_cache_bytes=limit) as looping:
        peak = 0
        for i in range(40):
            payload = i.to_bytes(4, "big") * (BIG // 4)  # new content every round
            assert looping.submit(len, payload).result(timeout=30) == BIG
            peak = max(peak, scheduler.objects())
        stats = looping.statistics()
        assert stats["objects_created"] == 40
        assert stats["objects_automatic_bytes"] <= limit + BIG
        assert scheduler.wait_objects(stats["objects_automatic"]) <= 5
        assert peak <= 6, peak
    assert scheduler.wait_objects(0) == 0


def test_big_arguments_and_results_round_trip(client: Client) -> None:
    blob = bytes(range(256)) * (4 * 4096)  # 4 MiB
    assert client.submit(len, blob).result(timeout=60) == len(blob)
    assert client.submit(make_bytes, len(blob)).result(timeout=60) == b"r" * len(blob)


# -- big results ---------------------------------------------------------------------------------------------


def test_a_big_result_stays_on_the_scheduler_until_read(scheduler: InProcessScheduler, client: Client) -> None:
    future = client.submit(make_bytes, BIG)
    deadline = time.monotonic() + 30
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert future.done()
    assert client.statistics()["results_kept_on_scheduler"] == 1
    assert scheduler.wait_objects(1) == 1
    assert future.result(timeout=30) == b"r" * BIG
    assert scheduler.wait_objects(0) == 0
    assert client.statistics()["results_kept_on_scheduler"] == 0


def test_a_dropped_future_frees_its_kept_result(scheduler: InProcessScheduler, client: Client) -> None:
    future = client.submit(make_bytes, BIG)
    deadline = time.monotonic() + 30
    while not future.done() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert scheduler.wait_objects(1) == 1
    del future
    gc.collect()
    assert scheduler.wait_objects(0) == 0


def test_wait_as_completed_callbacks_and_await_read_kept_results(client: Client) -> None:
    sizes = [BIG + i for i in range(6)]
    futures = [client.submit(make_bytes, size) for size in sizes]
    done, not_done = concurrent.futures.wait(futures, timeout=30)
    assert not not_done
    assert [len(future.result(timeout=0)) for future in futures] == sizes

    futures = [client.submit(make_bytes, size) for size in sizes]
    assert sorted(len(f.result(timeout=0)) for f in concurrent.futures.as_completed(futures, timeout=30)) == sizes

    seen: list[int] = []
    event = threading.Event()
    future = client.submit(make_bytes, BIG)
    future.add_done_callback(lambda f: (seen.append(len(f.result())), event.set()))
    assert event.wait(30) and seen == [BIG]

    async def read() -> int:
        return len(await client.submit(make_bytes, BIG))

    assert asyncio.run(read()) == BIG


def test_map_and_get_read_kept_results(scheduler: InProcessScheduler, client: Client) -> None:
    assert client.map(make_bytes, [BIG + i for i in range(8)]) == [b"r" * (BIG + i) for i in range(8)]
    graph = {"n": BIG, "big": (make_bytes, "n"), "size": (len, "big")}
    assert client.get(graph, ["big", "size"]) == {"big": b"r" * BIG, "size": BIG}
    assert scheduler.wait_objects(0) == 0
