"""The processor's task runner, in this process: objects, profiling, output streaming, blocked notices.

``processor_context`` is installed on one end of a ``multiprocessing.Pipe`` and the test reads
what a processor would send its agent from the other end.
"""

from __future__ import annotations

import collections
import collections.abc
import os
import pickle
import sys
import threading
import time
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import Any

import cloudpickle
import pytest

from scaler.client.serializer import DefaultSerializer
from scaler.io.output_limits import TokenBucket
from scaler.protocol.codec import decode
from scaler.protocol.messages import (
    ArgumentKind,
    LogStream,
    Message,
    ObjectContent,
    ObjectInstruction,
    ObjectInstructionType,
    ProcessorBlocked,
    Task,
    TaskArgument,
    TaskLog,
    TaskStatus,
)
from scaler.worker import processor_context
from scaler.worker.processor import apply_deletes, run_task

SERIALIZER = DefaultSerializer()


@pytest.fixture
def agent_end() -> collections.abc.Iterator[Connection]:
    """Install the processor context on a pipe; yield the agent's end."""
    agent, processor = Pipe(duplex=True)
    saved = os.environ.get(processor_context.SCHEDULER_ADDRESS_VARIABLE)
    processor_context.install(processor, "tcp://127.0.0.1:9")
    try:
        yield agent
    finally:
        processor_context.uninstall()
        if saved is None:
            os.environ.pop(processor_context.SCHEDULER_ADDRESS_VARIABLE, None)
        else:
            os.environ[processor_context.SCHEDULER_ADDRESS_VARIABLE] = saved
        agent.close()
        processor.close()


def received(agent: Connection) -> list[Message]:
    messages: list[Message] = []
    while agent.poll():
        messages += decode(agent.recv_bytes())
    return messages


def make_task(
    task_id: bytes, function: Any, *args: Any, objects: list[ObjectContent] | None = None, **fields: Any
) -> Task:
    arguments = []
    for arg in args:
        if isinstance(arg, bytes) and arg.startswith(b"obj:"):
            arguments.append(TaskArgument("", ArgumentKind.OBJECT, arg))
        else:
            arguments.append(TaskArgument("", ArgumentKind.INLINE, SERIALIZER.serialize(arg)))
    pickled = cloudpickle.dumps((function, SERIALIZER))
    return Task(task_id, b"fn-" + task_id, pickled, arguments, 1, objects=objects or [], **fields)


def value_of(result: Any) -> Any:
    assert result.status is TaskStatus.SUCCESS, pickle.loads(result.payload)
    return SERIALIZER.deserialize(result.payload)


# -- objects ----------------------------------------------------------------------------------------


def test_object_arguments_come_from_the_cache_and_are_fresh_at_each_use() -> None:
    functions: dict[bytes, Any] = {}
    objects: dict[bytes, bytes] = {}

    def grow(items: list[int], extra: int) -> list[int]:
        items.append(extra)
        return items

    content = ObjectContent(b"obj:1", SERIALIZER.serialize([1]))
    assert value_of(run_task(make_task(b"t1", grow, b"obj:1", 2, objects=[content]), functions, objects)) == [1, 2]
    assert objects == {b"obj:1": content.data}
    assert value_of(run_task(make_task(b"t2", grow, b"obj:1", 3), functions, objects)) == [1, 3]


def test_a_missing_object_fails_the_task_with_a_clear_error() -> None:
    result = run_task(make_task(b"t1", len, b"obj:gone"), {}, {})
    assert result.status is TaskStatus.FAILED
    error, text = pickle.loads(result.payload)
    assert isinstance(error, LookupError)
    assert b"obj:gone".hex() in str(error)


# -- profiling ---------------------------------------------------------------------------------------


def spin_and_allocate(megabytes: int) -> int:
    block = bytearray(megabytes * 1024 * 1024)
    block[::4096] = b"\x01" * len(block[::4096])
    total = 0
    for index in range(200_000):
        total += index
    return len(block)


def test_profiling_fills_the_result() -> None:
    result = run_task(make_task(b"t1", spin_and_allocate, 64, profiling=True), {}, {})
    assert value_of(result) == 64 * 1024 * 1024
    assert result.duration_seconds > 0
    assert result.cpu_seconds > 0
    assert result.peak_memory_bytes >= 64 * 1024 * 1024


def test_no_profiling_leaves_zeros() -> None:
    result = run_task(make_task(b"t1", spin_and_allocate, 1), {}, {})
    assert (result.duration_seconds, result.cpu_seconds, result.peak_memory_bytes) == (0.0, 0.0, 0)


def test_the_sampling_fallback_sees_the_peak(monkeypatch: pytest.MonkeyPatch) -> None:
    from scaler.worker import profiling

    monkeypatch.setattr(profiling, "_reset_kernel_peak", lambda: False)
    result = run_task(make_task(b"t1", spin_and_allocate, 32, profiling=True), {}, {})
    assert result.peak_memory_bytes >= 32 * 1024 * 1024


def rebuild_slowly(seconds: float) -> str:
    time.sleep(seconds)
    return "loaded"


class SlowToLoad:
    """An argument that takes ``seconds`` to unpickle."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __reduce__(self) -> tuple[Any, ...]:
        return rebuild_slowly, (self.seconds,)


class SlowToPickle:
    """A result that takes ``seconds`` to pickle."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __reduce__(self) -> tuple[Any, ...]:
        time.sleep(self.seconds)
        return str, ("pickled",)


def test_profiling_splits_loading_running_and_pickling() -> None:
    def slow_result(argument: str) -> SlowToPickle:
        time.sleep(0.2)
        return SlowToPickle(0.3)

    result = run_task(make_task(b"t1", slow_result, SlowToLoad(0.3), profiling=True), {}, {})
    assert value_of(result) == "pickled"
    assert result.load_seconds >= 0.3
    assert 0.2 <= result.duration_seconds < 0.5  # the call alone: with the loading or the pickling, 0.5 or more
    assert result.serialize_seconds >= 0.3
    assert result.result_bytes == len(result.payload)


def test_profiling_measures_the_result_size() -> None:
    result = run_task(make_task(b"t1", bytes, 1_000_000, profiling=True), {}, {})
    assert result.result_bytes >= 1_000_000
    assert result.result_bytes == len(result.payload)


def test_profiling_of_a_task_that_raises() -> None:
    def slow_failure() -> None:
        time.sleep(0.2)
        raise ValueError("no")

    result = run_task(make_task(b"t1", slow_failure, profiling=True), {}, {})
    assert result.status is TaskStatus.FAILED
    assert result.duration_seconds >= 0.2
    assert result.result_bytes == len(result.payload) > 0  # the pickled exception went back


def test_profiling_of_a_task_whose_arguments_cannot_load() -> None:
    result = run_task(make_task(b"t1", len, b"obj:missing", profiling=True), {}, {})
    assert result.status is TaskStatus.FAILED
    assert result.load_seconds >= 0 and result.duration_seconds < 0.05


# -- output streaming -----------------------------------------------------------------------------------


def printer(lines: int) -> str:
    for index in range(lines):
        print("line", index)
    sys.stderr.write("partial")
    sys.stderr.write(" error\n")
    print("tail", end="")
    return "ok"


def test_streamed_output_is_coalesced_and_all_sent_before_the_result(agent_end: Connection) -> None:
    stdout, stderr = sys.stdout, sys.stderr
    result = run_task(make_task(b"t1", printer, 2, stream_output=True), {}, {})
    assert value_of(result) == "ok"
    assert (sys.stdout, sys.stderr) == (stdout, stderr)
    logs = received(agent_end)
    assert all(isinstance(m, TaskLog) and m.task_id == b"t1" and not m.dropped_bytes for m in logs)
    assert "".join(m.text for m in logs if m.stream is LogStream.STDOUT) == "line 0\nline 1\ntail"
    assert "".join(m.text for m in logs if m.stream is LogStream.STDERR) == "partial error\n"
    assert len(logs) <= 4  # coalesced: not one message per write (5 writes here)


def test_output_of_a_failing_task_is_flushed_and_the_streams_restored(agent_end: Connection) -> None:
    def fails() -> None:
        print("before", end="")
        raise ValueError("boom")

    stdout = sys.stdout
    result = run_task(make_task(b"t1", fails, stream_output=True), {}, {})
    assert result.status is TaskStatus.FAILED
    assert sys.stdout is stdout
    assert received(agent_end) == [TaskLog(b"t1", LogStream.STDOUT, "before")]


def flood(lines: int) -> str:
    for _ in range(lines):
        print("y" * 99)
    return "done"


def test_output_over_the_processors_budget_is_dropped_and_counted(agent_end: Connection) -> None:
    budget = TokenBucket(rate=1.0, burst=1000.0)  # 1000 bytes now, then next to nothing
    result = run_task(make_task(b"t1", flood, 1000, stream_output=True), {}, {}, budget)
    assert value_of(result) == "done"
    logs = [m for m in received(agent_end) if isinstance(m, TaskLog)]
    kept = sum(len(m.text) for m in logs)
    assert 1000 <= kept <= 1010  # a second's refill, at most, on a slow machine
    assert kept + sum(m.dropped_bytes for m in logs) == 100 * 1000
    assert logs[-1].dropped_bytes and not logs[-1].text  # the final notice: nothing printed after the gap


def test_output_from_threads_all_arrives(agent_end: Connection) -> None:
    def threaded() -> None:
        def write(name: str) -> None:
            for index in range(200):
                print(f"{name}-{index}")

        threads = [threading.Thread(target=write, args=(name,)) for name in "abcd"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    # Read while the task writes, as the agent does: a pipe holds only so many small messages.
    messages: list[Message] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set() or agent_end.poll():
            if agent_end.poll(0.01):
                messages.extend(decode(agent_end.recv_bytes()))

    reader = threading.Thread(target=read)
    reader.start()
    run_task(make_task(b"t1", threaded, stream_output=True), {}, {})
    done.set()
    reader.join()
    text = "".join(m.text for m in messages if isinstance(m, TaskLog))
    # print() writes a line and its newline separately, so lines of threads may interleave, as on a
    # terminal; every character arrives.
    expected = "".join(f"{name}-{index}\n" for name in "abcd" for index in range(200))
    assert collections.Counter(text) == collections.Counter(expected)


# -- blocked notices --------------------------------------------------------------------------------------


def test_blocked_sends_one_notice_per_outermost_wait(agent_end: Connection) -> None:
    with processor_context.blocked():
        with processor_context.blocked():
            pass
        assert received(agent_end) == [ProcessorBlocked(True)]
    assert received(agent_end) == [ProcessorBlocked(False)]


def test_overlapping_waits_from_threads_count_as_one(agent_end: Connection) -> None:
    inside = threading.Barrier(3)
    leave = threading.Event()

    def wait() -> None:
        with processor_context.blocked():
            inside.wait()
            leave.wait()

    threads = [threading.Thread(target=wait) for _ in range(2)]
    for thread in threads:
        thread.start()
    inside.wait()
    assert received(agent_end) == [ProcessorBlocked(True)]
    leave.set()
    for thread in threads:
        thread.join()
    assert received(agent_end) == [ProcessorBlocked(False)]


def test_a_new_task_forgets_the_waits_of_the_old_one(agent_end: Connection) -> None:
    waiting = processor_context.blocked()
    waiting.__enter__()
    assert received(agent_end) == [ProcessorBlocked(True)]
    processor_context.task_started()
    waiting.__exit__(None, None, None)  # a leftover thread of the old task ends its wait
    assert received(agent_end) == []
    with processor_context.blocked():
        pass
    assert received(agent_end) == [ProcessorBlocked(True), ProcessorBlocked(False)]


def current_task_id_or_raise(fail: bool) -> bytes:
    if fail:
        raise ValueError(processor_context.current_task_id())
    return processor_context.current_task_id()


@pytest.mark.parametrize("fail", [False, True])
def test_a_task_sees_its_own_id_and_nothing_is_left_after_it(fail: bool) -> None:
    """A client made in a task names it as parent of what it submits; a thread left behind names none."""
    result = run_task(make_task(b"t1", current_task_id_or_raise, fail), {}, {})
    if fail:
        error, _ = pickle.loads(result.payload)
        assert error.args == (b"t1",)
    else:
        assert value_of(result) == b"t1"
    assert processor_context.current_task_id() == b""


def test_outside_a_processor_blocked_is_a_no_op() -> None:
    assert not processor_context.in_processor()
    with processor_context.blocked():
        pass
    assert processor_context.scheduler_address() is None


def test_inside_a_processor_the_scheduler_address_is_known(agent_end: Connection) -> None:
    assert processor_context.in_processor()
    assert processor_context.scheduler_address() == "tcp://127.0.0.1:9"


# -- exceptions too big to send back ---------------------------------------------------------------


def test_an_exception_too_big_for_a_message_comes_back_as_a_serialization_error(monkeypatch: Any) -> None:
    from scaler.errors import SerializationError
    from scaler.worker import processor

    monkeypatch.setattr(processor, "MAX_PAYLOAD_BYTES", 10_000)

    def explode() -> None:
        raise ValueError("x" * 100_000)

    result = run_task(make_task(b"t1", explode), {}, {})
    assert result.status is TaskStatus.FAILED
    assert len(result.payload) < 50_000
    error, text = pickle.loads(result.payload)
    assert isinstance(error, SerializationError)
    assert "builtins.ValueError" in str(error) and "message limit" in str(error)


def test_the_agent_s_deletes_drop_objects_and_functions_from_the_processor_s_caches() -> None:
    functions: dict[bytes, Any] = {b"f1": (len, None), b"f2": (max, None)}
    objects = {b"o1": b"x", b"o2": b"y"}
    apply_deletes(ObjectInstruction(ObjectInstructionType.DELETE, [b"o1", b"unknown"], []), functions, objects)
    assert set(objects) == {b"o2"} and set(functions) == {b"f1", b"f2"}
    apply_deletes(ObjectInstruction(ObjectInstructionType.DELETE_FUNCTIONS, [b"f1"], []), functions, objects)
    assert set(objects) == {b"o2"} and set(functions) == {b"f2"}
    apply_deletes(ObjectInstruction(ObjectInstructionType.CLEAR, [], []), functions, objects)  # not the agent's to send
    assert set(objects) == {b"o2"} and set(functions) == {b"f2"}
