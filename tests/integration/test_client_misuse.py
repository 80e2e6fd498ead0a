"""A client survives what its user's code does to it: raising callbacks, a shutdown from a
callback, a fork (issue 9, defects 2, 5 and 6). Nothing may wait forever."""

from __future__ import annotations

import concurrent.futures
import logging
import os
import pickle
import sys
import threading
import time
import warnings
from collections.abc import Iterator

import pytest

from scaler import Client, ClientForkedError, DisconnectedError, SchedulerClusterCombo
from tests.integration import tasks


@pytest.fixture
def unprotected() -> Iterator[SchedulerClusterCombo]:
    with SchedulerClusterCombo(n_workers=2, logging_level="WARNING", protected=False) as cluster:
        yield cluster


@pytest.mark.parametrize("error", [SystemExit(1), KeyboardInterrupt()], ids=["SystemExit", "KeyboardInterrupt"])
def test_a_callback_raising_a_base_exception_does_not_stop_result_delivery(
    client: Client, error: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    def callback(_future: object) -> None:
        raise error

    first = client.submit(tasks.noop, 1)
    first.add_done_callback(callback)
    assert first.result(timeout=10) == 1
    # The agent thread lives on: later tasks finish, and a blocking cancel gets its answer.
    assert [future.result(timeout=10) for future in [client.submit(tasks.noop, i) for i in range(20)]] == list(
        range(20)
    )
    slow = client.submit(tasks.sleep_return, 30)
    time.sleep(0.2)
    assert slow.cancel() is True
    # A callback added to a finished future, from the agent thread (a callback's callback), too.
    chained = client.submit(tasks.noop, 2)
    nested_ran = threading.Event()

    def add_nested(future: object) -> None:
        chained.add_done_callback(callback)
        nested_ran.set()

    chained.add_done_callback(add_nested)
    assert nested_ran.wait(10)
    assert client.submit(tasks.noop, 3).result(timeout=10) == 3
    assert "a done-callback raised" in caplog.text


def test_if_the_agent_thread_ends_every_pending_future_fails_and_submit_raises(
    unprotected: SchedulerClusterCombo,
) -> None:
    # Its own cluster: a dead agent cannot say goodbye, so the scheduler keeps its tasks until it times out.
    client = Client(address=unprotected.get_address(), timeout_seconds=10)
    try:
        pending = [client.submit(tasks.sleep_return, 30) for _ in range(3)]

        def die(_message: object) -> None:
            raise SystemExit("the agent dies on its next message")

        client._agent._dispatch = die  # type: ignore[method-assign]  # any failure inside the agent loop
        for future in pending:
            with pytest.raises(DisconnectedError, match="agent thread failed"):
                future.result(timeout=10)
        client._agent.join(timeout=10)
        assert not client._agent.is_alive()
        with pytest.raises(DisconnectedError):
            client.submit(tasks.noop, 1)
    finally:
        client.disconnect()


def test_a_late_submit_after_the_agent_thread_ended_fails_at_once(client: Client) -> None:
    client._agent.stop()  # the agent thread ends, though the client was not disconnected
    assert not client._agent.is_alive()
    with pytest.raises(DisconnectedError):
        client.submit(tasks.noop, 1)


def test_shutdown_from_a_callback_on_a_protected_scheduler_neither_blocks_nor_misleads(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    returned = threading.Event()

    def shut_down(_future: object) -> None:
        client.shutdown()  # on the agent thread: sends the request and returns
        returned.set()

    started = time.monotonic()
    client.submit(tasks.noop, 1).add_done_callback(shut_down)
    assert returned.wait(5)
    assert time.monotonic() - started < 5  # not the client's 10 s timeout
    assert client.submit(tasks.noop, 2).result(timeout=10) == 2  # results and heartbeats still move
    deadline = time.monotonic() + 10
    while "refused the shutdown" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "protected mode" in caplog.text


def test_shutdown_from_a_callback_on_an_unprotected_scheduler_ends_everything(
    unprotected: SchedulerClusterCombo,
) -> None:
    client = Client(address=unprotected.get_address(), timeout_seconds=10)
    slow = client.submit(tasks.sleep_return, 30)
    started = time.monotonic()
    client.submit(tasks.noop, 1).add_done_callback(lambda _future: client.shutdown())
    with pytest.raises((DisconnectedError, concurrent.futures.CancelledError)):
        slow.result(timeout=15)
    assert time.monotonic() - started < 8  # not after the client's 10 s timeout
    with pytest.raises(DisconnectedError):
        client.submit(tasks.noop, 2)
    client.disconnect()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX-only")
def test_a_client_used_in_a_forked_child_raises_a_clear_error(client: Client) -> None:
    assert client.submit(tasks.noop, 1).result(timeout=10) == 1
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() of a multi-threaded process
        pid = os.fork()
    if pid == 0:  # the child: report what each call did, then leave at once
        outcomes = []
        for call in (
            lambda: client.submit(tasks.noop, 2),
            lambda: client.map(tasks.noop, [1]),
            lambda: client.get({"a": 1}, ["a"]),
            lambda: client.send_object(b"x"),
            lambda: client.disconnect(),
        ):
            try:
                call()
                outcomes.append("no error")
            except ClientForkedError as error:
                outcomes.append("ClientForkedError: " + str(error))
            except BaseException as error:
                outcomes.append(f"{type(error).__name__}: {error}")
        os.write(write_end, pickle.dumps(outcomes))
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        outcomes = pickle.loads(reader.read())
    os.waitpid(pid, 0)
    assert len(outcomes) == 5
    for outcome in outcomes:
        assert outcome.startswith("ClientForkedError"), outcome
        assert "create a new Client in the child process" in outcome
    assert client.submit(tasks.noop, 3).result(timeout=10) == 3  # the parent's client is unaffected


def test_callback_logging_names_the_task(client: Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    future = client.submit(tasks.noop, 1)
    future.result(timeout=10)
    future.add_done_callback(lambda _future: sys.exit(3))  # already done: runs here, logged, not raised
    assert future.task_id.hex() in caplog.text
