"""A real worker (agent and processors, ``python -m scaler.cli.worker``) driven by a fake scheduler.

The test owns the ROUTER socket and speaks the protocol itself, so these tests exercise only the
worker: objects, nested (blocked) tasks, profiling, output streaming, capabilities, balancing and
per-task timeouts, independently of the real scheduler and client.
"""

from __future__ import annotations

import collections.abc
import os
import pathlib
import pickle
import subprocess
import sys
import time
from typing import Any

import cloudpickle
import pytest
import zmq

from scaler.client.serializer import DefaultSerializer
from scaler.io.sockets import bind_router, free_tcp_address
from scaler.protocol.codec import decode, encode_one
from scaler.protocol.messages import (
    ArgumentKind,
    BalanceRequest,
    BalanceResponse,
    CancelConfirmType,
    LogStream,
    Message,
    ObjectContent,
    ObjectInstruction,
    ObjectInstructionType,
    Task,
    TaskArgument,
    TaskCancel,
    TaskCancelConfirm,
    TaskLog,
    TaskResult,
    TaskStatus,
    WorkerHeartbeat,
)
from scaler.worker import processor_context
from tests.integration.conftest import descendants, wait_no_descendants

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import the tests package

SERIALIZER = DefaultSerializer()


# -- task functions ----------------------------------------------------------------------------------


def identity(value: Any) -> Any:
    return value


def append_and_return(items: list[int]) -> list[int]:
    items.append(len(items))
    return items


def sleep_then(seconds: float, value: Any) -> Any:
    time.sleep(seconds)
    return value


def allocate_and_spin(megabytes: int, seconds: float) -> int:
    block = bytearray(megabytes * 1024 * 1024)
    for index in range(0, len(block), 4096):
        block[index] = 1
    deadline = time.process_time() + seconds
    while time.process_time() < deadline:
        pass
    return len(block)


def chatty(lines: int) -> str:
    for index in range(lines):
        print(f"out {index}")
    print("err line", file=sys.stderr)
    print("no newline at the end", end="")
    return "done"


def wait_for_file(path: str, timeout: float) -> int:
    """A parent: blocks until a child task creates ``path`` (it reports the wait as a blocked one)."""
    deadline = time.monotonic() + timeout
    with processor_context.blocked():
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} never appeared")
            time.sleep(0.01)
    return os.getpid()


def create_file(path: str) -> int:
    pathlib.Path(path).touch()
    return os.getpid()


def die() -> None:
    os._exit(3)


def where_is_my_scheduler() -> str | None:
    return processor_context.scheduler_address()


# -- the fake scheduler ------------------------------------------------------------------------------


class FakeScheduler:
    """A ROUTER socket that one worker connects to; collects what the worker sends."""

    def __init__(self, *worker_args: str) -> None:
        self.address = free_tcp_address()
        self.context = zmq.Context()
        self.sock = bind_router(self.context, self.address)
        self.worker_id: bytes | None = None
        self.received: list[Message] = []
        self.functions: set[bytes] = set()
        command = [sys.executable, "-m", "scaler.cli.worker", self.address, "--heartbeat-interval-seconds=0.2"]
        command += ["--logging-level=WARNING", "--exit-with-parent", *worker_args]
        self.worker = subprocess.Popen(command)
        self.wait_for(lambda message: isinstance(message, WorkerHeartbeat), timeout=30)

    def send(self, *messages: Message) -> None:
        assert self.worker_id is not None
        for message in messages:
            self.sock.send_multipart([self.worker_id, encode_one(message)])

    def submit(self, task_id: bytes, function: Any, *args: Any, **fields: Any) -> None:
        """Send a task; ``args`` that are ``Obj`` travel as OBJECT arguments."""
        pickled = cloudpickle.dumps((function, SERIALIZER), protocol=pickle.HIGHEST_PROTOCOL)
        function_id = pickled[-16:] + bytes([len(pickled) % 256])
        arguments = []
        for arg in args:
            if isinstance(arg, Obj):
                arguments.append(TaskArgument("", ArgumentKind.OBJECT, arg.object_id))
            else:
                arguments.append(TaskArgument("", ArgumentKind.INLINE, SERIALIZER.serialize(arg)))
        first = function_id not in self.functions
        self.functions.add(function_id)
        self.send(Task(task_id, function_id, pickled if first else b"", arguments, 1, **fields))

    def poll_once(self, timeout: float) -> None:
        if self.sock.poll(int(timeout * 1000)):
            identity_frame, frame = self.sock.recv_multipart()
            self.worker_id = identity_frame
            self.received += decode(frame)

    def wait_for(self, predicate: collections.abc.Callable[[Message], bool], timeout: float = 20.0) -> Message:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for message in self.received[seen:]:
                if predicate(message):
                    return message
            seen = len(self.received)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"not received in {timeout}s; got {self.received[-10:]}")
            self.poll_once(min(remaining, 0.1))

    def result(self, task_id: bytes, timeout: float = 20.0) -> TaskResult:
        message = self.wait_for(lambda m: isinstance(m, TaskResult) and m.task_id == task_id, timeout)
        assert isinstance(message, TaskResult)
        return message

    def value(self, task_id: bytes, timeout: float = 20.0) -> Any:
        result = self.result(task_id, timeout)
        if result.status is not TaskStatus.SUCCESS:
            raise AssertionError(f"task {task_id!r} ended {result.status.name}: {_failure_text(result)}")
        return SERIALIZER.deserialize(result.payload)

    def close(self) -> None:
        self.worker.terminate()
        try:
            self.worker.wait(timeout=15)
        finally:
            self.sock.close(linger=0)
            self.context.term()


class Obj:
    def __init__(self, object_id: bytes) -> None:
        self.object_id = object_id


def _failure_text(result: TaskResult) -> str:
    if result.status is TaskStatus.FAILED:
        error, text = pickle.loads(result.payload)
        return f"{error!r}\n{text}"
    return result.payload.decode(errors="replace")


@pytest.fixture
def scheduler() -> collections.abc.Iterator[FakeScheduler]:
    before = descendants()
    fake = FakeScheduler("--per-worker-capabilities=gpu=1,fpga=2")
    try:
        yield fake
    finally:
        fake.close()
    assert wait_no_descendants(before) == set()


def object_content(object_id: bytes, value: Any) -> ObjectContent:
    return ObjectContent(object_id, SERIALIZER.serialize(value))


# -- tests -------------------------------------------------------------------------------------------


def test_every_heartbeat_carries_the_capabilities(scheduler: FakeScheduler) -> None:
    heartbeats = [m for m in scheduler.received if isinstance(m, WorkerHeartbeat)]
    scheduler.wait_for(lambda m: isinstance(m, WorkerHeartbeat) and m not in heartbeats)
    heartbeats = [m for m in scheduler.received if isinstance(m, WorkerHeartbeat)]
    assert len(heartbeats) >= 2
    assert all(m.capabilities == {"gpu": 1, "fpga": 2} for m in heartbeats)


def test_the_processor_knows_its_scheduler(scheduler: FakeScheduler) -> None:
    scheduler.submit(b"t1", where_is_my_scheduler)
    assert scheduler.value(b"t1") == scheduler.address


def test_object_arguments_are_cached_and_deserialized_at_each_use(scheduler: FakeScheduler) -> None:
    content = object_content(b"o1", [10, 20])
    scheduler.submit(b"t1", append_and_return, Obj(b"o1"), objects=[content])
    assert scheduler.value(b"t1") == [10, 20, 2]
    # No bytes this time: the agent and the processor kept them, and the task's change did not stick.
    scheduler.submit(b"t2", append_and_return, Obj(b"o1"))
    assert scheduler.value(b"t2") == [10, 20, 2]
    scheduler.send(ObjectInstruction(ObjectInstructionType.DELETE, [b"o1"], []))
    scheduler.submit(b"t3", identity, Obj(b"o1"))
    failure = scheduler.result(b"t3")
    assert failure.status is TaskStatus.FAILED
    error, _ = pickle.loads(failure.payload)
    assert isinstance(error, LookupError)
    assert b"o1".hex() in str(error)


def test_profiling_measures_time_cpu_and_peak_memory(scheduler: FakeScheduler) -> None:
    scheduler.submit(b"plain", identity, 1)
    plain = scheduler.result(b"plain")
    assert (plain.duration_seconds, plain.cpu_seconds, plain.peak_memory_bytes) == (0.0, 0.0, 0)
    scheduler.submit(b"t1", allocate_and_spin, 100, 0.2, profiling=True)
    result = scheduler.result(b"t1")
    assert result.status is TaskStatus.SUCCESS
    assert result.cpu_seconds >= 0.2
    assert result.duration_seconds >= result.cpu_seconds * 0.9
    assert result.peak_memory_bytes >= 100 * 1024 * 1024
    # The peak is per task: a small task after the big one does not inherit its peak.
    scheduler.submit(b"t2", allocate_and_spin, 1, 0.0, profiling=True)
    assert scheduler.result(b"t2").peak_memory_bytes < 100 * 1024 * 1024


def test_streamed_output_arrives_as_task_logs_before_the_result(scheduler: FakeScheduler) -> None:
    scheduler.submit(b"t1", chatty, 3, stream_output=True)
    assert scheduler.value(b"t1") == "done"
    logs = [m for m in scheduler.received if isinstance(m, TaskLog)]
    assert all(m.task_id == b"t1" for m in logs)
    stdout = "".join(m.text for m in logs if m.stream is LogStream.STDOUT)
    stderr = "".join(m.text for m in logs if m.stream is LogStream.STDERR)
    assert stdout == "out 0\nout 1\nout 2\nno newline at the end"
    assert stderr == "err line\n"
    result_index = next(i for i, m in enumerate(scheduler.received) if isinstance(m, TaskResult))
    assert all(scheduler.received.index(m) < result_index for m in logs)
    # Without the flag, nothing is streamed.
    scheduler.submit(b"t2", chatty, 1)
    scheduler.value(b"t2")
    assert not [m for m in scheduler.received if isinstance(m, TaskLog) and m.task_id == b"t2"]


def test_a_tasks_own_timeout_stops_it_and_the_worker_goes_on(scheduler: FakeScheduler) -> None:
    started = time.monotonic()
    scheduler.submit(b"slow", sleep_then, 30.0, "never", timeout_seconds=0.5)
    scheduler.submit(b"next", identity, "after")
    result = scheduler.result(b"slow")
    assert result.status is TaskStatus.TIMEOUT
    assert time.monotonic() - started < 10
    assert scheduler.value(b"next") == "after"


def test_a_blocked_parent_lets_its_child_run_on_the_same_worker(
    scheduler: FakeScheduler, tmp_path: pathlib.Path
) -> None:
    flag = str(tmp_path / "child-ran")
    scheduler.submit(b"parent", wait_for_file, flag, 20.0)
    scheduler.submit(b"child", create_file, flag)
    child_pid = scheduler.value(b"child")
    parent_pid = scheduler.value(b"parent")
    assert child_pid != parent_pid  # the child ran on another processor while the parent was parked
    # The worker is free again: the next task runs.
    scheduler.submit(b"after", identity, 7)
    assert scheduler.value(b"after") == 7


def test_cancel_of_a_parked_parent_and_death_of_a_child_touch_only_their_own_task(
    scheduler: FakeScheduler, tmp_path: pathlib.Path
) -> None:
    flag = str(tmp_path / "never")
    scheduler.submit(b"parent", wait_for_file, flag, 30.0)
    scheduler.submit(b"dies", die)
    assert scheduler.result(b"dies").status is TaskStatus.PROCESSOR_DIED
    scheduler.send(TaskCancel(b"parent"))
    confirm = scheduler.wait_for(lambda m: isinstance(m, TaskCancelConfirm) and m.task_id == b"parent")
    assert isinstance(confirm, TaskCancelConfirm) and confirm.confirm is CancelConfirmType.CANCELED
    scheduler.submit(b"after", identity, 8)
    assert scheduler.value(b"after") == 8
    assert not [m for m in scheduler.received if isinstance(m, TaskResult) and m.task_id == b"parent"]


def test_balance_hands_back_only_queued_tasks(scheduler: FakeScheduler) -> None:
    scheduler.submit(b"warm", identity, 0)
    scheduler.value(b"warm")  # the processor is up, so the next task starts as soon as it arrives
    scheduler.submit(b"running", sleep_then, 1.0, "r")
    for task_id in (b"q1", b"q2", b"q3"):
        scheduler.submit(task_id, identity, task_id)
    scheduler.send(BalanceRequest([b"q2", b"running", b"unknown", b"q3"]))
    response = scheduler.wait_for(lambda m: isinstance(m, BalanceResponse))
    assert isinstance(response, BalanceResponse)
    assert response.task_ids == [b"q2", b"q3"]
    assert scheduler.value(b"running") == "r"
    assert scheduler.value(b"q1") == b"q1"
    time.sleep(0.3)
    scheduler.poll_once(0.1)
    done = {m.task_id for m in scheduler.received if isinstance(m, TaskResult)}
    assert done == {b"warm", b"running", b"q1"}


def test_many_tasks_on_one_worker_keep_one_processor(scheduler: FakeScheduler) -> None:
    for index in range(200):
        scheduler.submit(b"t%d" % index, os.getpid)
    pids = {scheduler.value(b"t%d" % index) for index in range(200)}
    assert len(pids) == 1
