"""The future behaviours that Scaler's own test suite checks, and its error names, as this project's tests.

Scaler users' code relies on these; they must hold here unchanged (issue 10, section 1).
"""

from __future__ import annotations

import concurrent.futures
import threading
import time

import pytest

import scaler
import scaler.errors
from scaler import Client, SchedulerClusterCombo
from scaler.utility import exceptions as scaler_exceptions
from tests.integration import tasks


def test_a_done_callback_sees_the_result(client: Client) -> None:
    seen: list[object] = []
    called = threading.Event()

    def callback(future: concurrent.futures.Future[object]) -> None:
        seen.append(future.result())
        called.set()

    client.submit(tasks.add, 2, 3).add_done_callback(callback)
    assert called.wait(10)
    assert seen == [5]


def test_as_completed_yields_the_future(client: Client) -> None:
    futures = [client.submit(tasks.noop, index) for index in range(10)]
    completed = list(concurrent.futures.as_completed(futures, timeout=10))
    assert set(completed) == set(futures)
    assert sorted(future.result() for future in completed) == list(range(10))


def test_running_right_after_submit_and_not_after_the_result(client: Client) -> None:
    future = client.submit(time.sleep, 0.5)
    assert future.running()
    assert future.result(timeout=10) is None
    assert not future.running()
    assert future.done()


def test_cancel_of_a_fresh_task_is_true_and_of_a_finished_one_false(client: Client) -> None:
    fresh = client.submit(tasks.sleep_return, 10)
    assert fresh.running()  # running() does not make cancel() refuse
    assert fresh.cancel() is True
    assert fresh.cancelled()
    finished = client.submit(tasks.noop, 1)
    assert finished.result(timeout=10) == 1
    assert finished.cancel() is False


def test_a_remote_type_error_keeps_its_type(client: Client) -> None:
    with pytest.raises(TypeError):
        client.submit(tasks.add, "text", 1).result(timeout=10)


def test_leaving_the_with_block_cancels_a_running_future(combo: SchedulerClusterCombo) -> None:
    with Client(address=combo.get_address(), timeout_seconds=10) as client:
        future = client.submit(tasks.sleep_return, 30)
        time.sleep(0.3)
        assert future.running()
    with pytest.raises(concurrent.futures.CancelledError):
        future.result(timeout=5)
    assert future.cancelled()


# -- Scaler's error names --------------------------------------------------------------------


@pytest.mark.parametrize("name", scaler_exceptions.__all__)
def test_each_scaler_error_name_is_the_class_scaler_raises(name: str) -> None:
    assert getattr(scaler_exceptions, name) is getattr(scaler.errors, name) is getattr(scaler, name)


@pytest.mark.parametrize(
    "name",
    [
        "ActorDeadError",
        "ActorNotFoundError",
        "CapnpDeserializationError",
        "ObjectStorageException",
        "ClientCancelledException",
        "ClientShutdownException",
        "ClientQuitException",
    ],
)
def test_scaler_names_with_no_meaning_here_are_absent_not_faked(name: str) -> None:
    assert not hasattr(scaler_exceptions, name)


def test_processor_died_error_is_caught_by_its_scaler_import() -> None:
    from scaler.utility.exceptions import ProcessorDiedError, WorkerDiedError

    with (
        SchedulerClusterCombo(n_workers=1, logging_level="WARNING", max_task_retries=0) as cluster,
        Client(address=cluster.get_address(), timeout_seconds=10) as client,
    ):
        future = client.submit(tasks.exit_process)
        with pytest.raises(ProcessorDiedError):
            future.result(timeout=20)
        assert isinstance(future.exception(), WorkerDiedError)


def test_a_refused_shutdown_is_also_a_value_error(client: Client) -> None:
    with pytest.raises(ValueError, match="protected"):
        client.shutdown()
    assert client.submit(tasks.noop, 2).result(timeout=10) == 2


def test_a_result_the_client_cannot_rebuild_raises_deserialize_object_error(client: Client) -> None:
    from scaler.utility.exceptions import DeserializeObjectError

    with pytest.raises(DeserializeObjectError, match="cannot deserialize its result"):
        client.submit(tasks.return_loads_badly).result(timeout=10)
    assert client.submit(tasks.noop, 3).result(timeout=10) == 3
