"""The client API end to end on a real local cluster (2 workers)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

import pytest

from scaler import (
    Client,
    ProcessorDiedError,
    RemoteTraceback,
    SchedulerClusterCombo,
    SerializationError,
    ShutdownRefusedError,
)
from tests.integration import tasks


def test_issue_examples(client: Client) -> None:
    assert client.submit(pow, 2, 10).result() == 1024
    assert client.submit(sorted, [3, 1, 2], reverse=True).result() == [3, 2, 1]
    assert client.map(abs, [-1, -2, -3]) == [1, 2, 3]
    assert client.starmap(pow, [(2, 3), (3, 2)]) == [8, 9]


def test_kwargs_and_keyword_only_arguments_reach_the_function(client: Client) -> None:
    assert client.submit(tasks.add, 1, y=2, z=3).result() == 6
    assert client.map(tasks.add, [1, 2], [10, 20]) == [11, 22]


def test_lambdas_and_closures_run(client: Client) -> None:
    offset = 7
    assert client.submit(lambda x: x + offset, 1).result() == 8


def test_ten_thousand_noop_tasks(client: Client) -> None:
    futures = [client.submit(tasks.noop, i) for i in range(10_000)]
    assert [future.result(timeout=60) for future in futures] == list(range(10_000))
    assert client.statistics()["pending"] == 0


def test_a_function_is_sent_once_however_often_it_is_submitted(client: Client) -> None:
    before = client.statistics()["functions_sent"]
    futures = [client.submit(tasks.noop, i) for i in range(10_000)]
    concurrent.futures.wait(futures, timeout=60)
    assert client.statistics()["functions_sent"] - before <= 1


def test_exceptions_keep_their_type_and_carry_the_remote_traceback(client: Client) -> None:
    with pytest.raises(ValueError, match="bad input") as caught:
        client.submit(tasks.raise_value_error, "bad input").result()
    assert isinstance(caught.value.__cause__, RemoteTraceback)
    assert "raise_value_error" in caught.value.__cause__.text
    with pytest.raises(tasks.CustomError) as custom:
        client.submit(tasks.raise_custom, 42).result()
    assert custom.value.code == 42


def test_unpicklable_result_and_exception_fail_clearly_and_the_worker_lives(client: Client) -> None:
    with pytest.raises(SerializationError, match="lock"):
        client.submit(tasks.return_unpicklable).result()
    with pytest.raises(SerializationError, match="UnpicklableError"):
        client.submit(tasks.raise_unpicklable).result()
    assert client.submit(pow, 3, 3).result() == 27


def test_a_processor_crash_fails_the_task_and_the_worker_keeps_serving(client: Client) -> None:
    with pytest.raises(ProcessorDiedError):
        client.submit(tasks.exit_process).result(timeout=30)
    assert client.map(tasks.noop, range(20)) == list(range(20))


def test_futures_work_with_wait_as_completed_callbacks_and_await(client: Client) -> None:
    futures = [client.submit(tasks.noop, i) for i in range(50)]
    done, not_done = concurrent.futures.wait(futures, timeout=30)
    assert len(done) == 50 and not not_done
    assert sorted(f.result() for f in concurrent.futures.as_completed(futures, timeout=30)) == list(range(50))

    seen: list[int] = []
    future = client.submit(tasks.noop, 5)
    future.add_done_callback(lambda f: seen.append(f.result()))
    future.result(timeout=30)
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == [5]

    async def gather() -> list[int]:
        return [await client.submit(tasks.noop, 1), await asyncio.wrap_future(client.submit(tasks.noop, 2))]

    assert asyncio.run(gather()) == [1, 2]


def test_cancelling_queued_tasks_and_a_running_sleep_frees_the_worker_fast(client: Client) -> None:
    running = [client.submit(tasks.sleep_return, 60) for _ in range(2)]
    queued = [client.submit(tasks.sleep_return, 60) for _ in range(10)]
    time.sleep(0.5)  # let the first two start on the two workers
    for future in queued:
        assert future.cancel() is True
    start = time.monotonic()
    for future in running:
        assert future.cancel() is True
    assert client.submit(tasks.noop, 1).result(timeout=10) == 1
    assert time.monotonic() - start < 5  # the issue asks for < 1 s; the benchmark measures it
    assert all(future.cancelled() for future in running + queued)
    with pytest.raises(concurrent.futures.CancelledError):
        running[0].result()


def test_cancel_of_a_finished_future_returns_false(client: Client) -> None:
    future = client.submit(tasks.noop, 1)
    assert future.result(timeout=30) == 1
    assert future.cancel() is False
    assert not future.cancelled()


def test_cancelling_200_pending_futures_one_by_one_is_quick(client: Client) -> None:
    blockers = [client.submit(tasks.sleep_return, 60) for _ in range(2)]
    futures = [client.submit(tasks.sleep_return, 60) for _ in range(200)]
    start = time.monotonic()
    assert all(future.cancel() for future in futures)
    elapsed = time.monotonic() - start
    for future in blockers:
        future.cancel()
    assert elapsed < 10, elapsed  # a loose sanity bound; the benchmark reports the real figure


def test_disconnect_while_a_task_runs_cancels_its_future(combo: SchedulerClusterCombo) -> None:
    client = Client(address=combo.get_address(), timeout_seconds=10)
    future = client.submit(tasks.sleep_return, 60)
    time.sleep(0.3)
    client.disconnect()
    client.disconnect()  # idempotent
    with pytest.raises(concurrent.futures.CancelledError):
        future.result(timeout=5)
    with Client(address=combo.get_address(), timeout_seconds=10) as fresh:
        assert fresh.submit(tasks.noop, 3).result(timeout=10) == 3


def test_protected_scheduler_refuses_shutdown(client: Client) -> None:
    with pytest.raises(ShutdownRefusedError, match="protected"):
        client.shutdown()
    assert client.submit(tasks.noop, 4).result(timeout=10) == 4


def test_submit_after_disconnect_raises_a_clear_error(combo: SchedulerClusterCombo) -> None:
    client = Client(address=combo.get_address(), timeout_seconds=10)
    client.disconnect()
    with pytest.raises(ConnectionError, match="create a new Client"):
        client.submit(tasks.noop, 1)


class Scaler:
    """A callable object whose state changes between submits."""

    def __init__(self) -> None:
        self.factor = 1

    def __call__(self, x: int) -> int:
        return x * self.factor


def test_callable_objects_are_pickled_at_each_submit_so_their_state_is_current(client: Client) -> None:
    scale = Scaler()
    assert client.submit(scale, 3).result(timeout=30) == 3
    scale.factor = 10
    assert client.submit(scale, 3).result(timeout=30) == 30


def test_large_arguments_and_results_round_trip(client: Client) -> None:
    blob = bytes(range(256)) * (20 * 4096)  # 20 MiB
    assert client.submit(len, blob).result(timeout=60) == len(blob)
    assert client.submit(bytes, len(blob)).result(timeout=60) == bytes(len(blob))


def test_a_submit_racing_disconnect_never_leaves_a_future_pending(combo: SchedulerClusterCombo) -> None:
    client = Client(address=combo.get_address(), timeout_seconds=10)
    running = client.submit(tasks.sleep_return, 60)
    followups: list[object] = []

    def submit_more(_: object) -> None:
        try:
            followups.append(client.submit(tasks.noop, 1))
        except ConnectionError:
            followups.append("refused")

    running.add_done_callback(submit_more)
    client.disconnect()
    assert running.cancelled()
    assert followups == ["refused"]


def test_disconnect_from_a_done_callback_works(combo: SchedulerClusterCombo, caplog: pytest.LogCaptureFixture) -> None:
    client = Client(address=combo.get_address(), timeout_seconds=10)
    future = client.submit(tasks.noop, 1)
    future.add_done_callback(lambda _: client.disconnect())
    assert future.result(timeout=30) == 1
    deadline = time.monotonic() + 10
    while not client._disconnected and time.monotonic() < deadline:
        time.sleep(0.01)
    assert client._disconnected
    # concurrent.futures logs a callback that raised; the disconnect must not raise.
    assert not [record for record in caplog.records if record.name == "concurrent.futures"]
    client.disconnect()  # idempotent from the user's thread too
