"""The processor: a subprocess of a worker agent that runs tasks one at a time.

It reads ``Task`` and ``ObjectInstruction`` batches from a pipe (``pipe.py``: big payloads come
as raw bytes after their envelope). It unpickles each function once
(with the client's serializer, which travels with it) and keeps each object's bytes by id until
the agent says ``DELETE``; an OBJECT argument is deserialized from those bytes, with the task's
serializer, at each use (so a task that mutates its argument never changes the next task's).
It runs the task and writes back one ``TaskResult``, through ``processor_context`` so that
writes from the task's threads (output lines, block notices) never interleave with it. A
task's exception comes back pickled together with its traceback text.

Per task, on request: ``profiling`` fills the result's loading, run, CPU and serialization
times, its size and the peak memory (``profiling.py``); ``stream_output`` sends what the task
prints as ``TaskLog`` messages, coalesced and within the processor's byte budget (``output.py``).
The processor leads its own process group, so the programs its tasks start share that group and
are killed with it (``process_group.py``). If the agent dies, a watchdog thread ends the
processor and that group, so no orphan outlives its worker.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

import cloudpickle
import psutil

from scaler.client.serializer import deserialize_payload
from scaler.errors import SerializationError
from scaler.io.output_limits import DEFAULT_OUTPUT_LIMITS, OutputLimits, TokenBucket
from scaler.protocol.codec import MAX_PAYLOAD_BYTES
from scaler.protocol.messages import ObjectInstruction, ObjectInstructionType, Task, TaskResult, TaskStatus
from scaler.utility.malloc_policy import keep_freed_memory
from scaler.worker import processor_context
from scaler.worker.output import redirect_output
from scaler.worker.pipe import PipeChannel
from scaler.worker.process_group import kill_own_group, lead_own_group
from scaler.worker.profiling import TaskProfile

logger = logging.getLogger(__name__)

_Function = tuple[Any, Any]  # (callable, serializer)


def _ignore_signal(signum: int, frame: object) -> None:
    logger.debug("processor %d ignored signal %d: the agent stops its tasks", os.getpid(), signum)


def run_processor(
    connection: Connection,
    agent_pid: int,
    scheduler_address: str = "",
    key_files: tuple[str, str] | None = None,
    output_limits: OutputLimits = DEFAULT_OUTPUT_LIMITS,
) -> None:
    """Entry point of the processor subprocess; ``key_files`` are the worker's, for clients made in tasks."""
    # First, before any task can start a program: its own process group, which the agent kills whole.
    lead_own_group()
    # Only the agent decides when a task stops: in its own group, the processor no longer gets a
    # SIGTERM or Ctrl-C sent to the worker's group, and one sent to it alone must not kill the task
    # either, or a graceful stop would turn into a crash and a retry.
    # (A Python handler, not SIG_IGN, which programs a task starts would inherit.)
    signal.signal(signal.SIGTERM, _ignore_signal)
    signal.signal(signal.SIGINT, _ignore_signal)
    threading.Thread(target=_exit_with_agent, args=(agent_pid,), daemon=True, name="agent-watchdog").start()
    keep_freed_memory()  # big payloads reuse freed memory: see malloc_policy.py
    try:
        _serve(connection, scheduler_address, key_files, output_limits)
    except BaseException:  # a bug of the processor's own (a task's errors are caught): show it before dying
        traceback.print_exc()
    kill_own_group()  # the agent is gone, or is killing this processor: take the task's programs along


def _serve(
    connection: Connection, scheduler_address: str, key_files: tuple[str, str] | None, output_limits: OutputLimits
) -> None:
    channel = PipeChannel(connection)
    processor_context.install(channel, scheduler_address, key_files)
    functions: dict[bytes, _Function] = {}
    objects: dict[bytes, bytes] = {}
    rate = output_limits.processor_bytes_per_second
    output_budget = TokenBucket(rate, output_limits.burst(rate))  # shared by all its tasks, one after another
    send = processor_context.send_to_agent
    while True:
        try:
            messages = channel.receive()
        except (EOFError, OSError):
            return
        for message in messages:
            if type(message) is Task:
                result = run_task(message, functions, objects, output_budget, output_limits)
                try:
                    send(result)
                except OSError:  # the agent is gone (killed): nobody to report to
                    return
            elif type(message) is ObjectInstruction:
                apply_deletes(message, functions, objects)
            else:
                logger.warning("processor %d ignored a %s from its agent", os.getpid(), type(message).__name__)


def apply_deletes(
    instruction: ObjectInstruction, functions: dict[bytes, _Function], objects: dict[bytes, bytes]
) -> None:
    """Drop the objects, or the functions, that the agent says are no longer needed."""
    if instruction.kind == ObjectInstructionType.DELETE:
        for object_id in instruction.object_ids:
            objects.pop(object_id, None)
    elif instruction.kind == ObjectInstructionType.DELETE_FUNCTIONS:
        for function_id in instruction.object_ids:
            functions.pop(function_id, None)
    else:
        logger.warning("processor %d ignored an ObjectInstruction of kind %s", os.getpid(), instruction.kind.name)


def run_task(
    task: Task,
    functions: dict[bytes, _Function],
    objects: dict[bytes, bytes],
    output_budget: TokenBucket | None = None,
    output_limits: OutputLimits = DEFAULT_OUTPUT_LIMITS,
) -> TaskResult:
    """Run one task with the profiling and output streaming it asks for; never raise.

    ``output_budget`` bounds what it may print (the processor's, shared by its tasks; else its own).
    """
    profile = TaskProfile() if task.profiling else None  # first: loading the objects is part of the cost
    for content in task.objects:
        objects[content.object_id] = content.data
    processor_context.task_started(task.task_id)
    try:
        if not task.stream_output:
            result = execute(task, functions, objects, profile)
        else:
            with redirect_output(task.task_id, output_budget, output_limits):
                result = execute(task, functions, objects, profile)
        if profile is not None:
            profile.fill(result)
        return result
    finally:
        processor_context.task_finished()


def execute(
    task: Task,
    functions: dict[bytes, _Function],
    objects: dict[bytes, bytes] | None = None,
    profile: TaskProfile | None = None,
) -> TaskResult:
    """Run one task and always return its result; never raise. ``profile`` is told each phase's end."""
    try:
        if task.function:
            functions[task.function_id] = pickle.loads(task.function)
        function, serializer = functions[task.function_id]
        args = []
        kwargs = {}
        for argument in task.args:
            if argument.kind:  # ArgumentKind.OBJECT: ``data`` is an object id
                value = deserialize_payload(serializer, _object(objects, argument.data))
            else:
                value = deserialize_payload(serializer, argument.data)
            if argument.name:
                kwargs[argument.name] = value
            else:
                args.append(value)
    except BaseException as error:  # noqa: BLE001 - a bad payload must not kill the processor
        return _failure(task, error)
    if profile is not None:
        profile.loaded()
    try:
        value = function(*args, **kwargs)
    except BaseException as error:  # noqa: BLE001 - report whatever the user code raised
        if profile is not None:
            profile.ran()
        return _failure(task, error)
    if profile is not None:
        profile.ran()
    try:
        payload = serializer.serialize(value)
    except BaseException as error:  # noqa: BLE001
        message = f"the task returned a {type(value).__qualname__} that cannot be serialized: {error}"
        return _failure(task, SerializationError(message))
    if profile is not None:
        profile.serialized(len(payload))
    if len(payload) > MAX_PAYLOAD_BYTES:
        message = f"the task's result is {len(payload)} bytes, over the {MAX_PAYLOAD_BYTES} byte message limit"
        return _failure(task, SerializationError(message))
    return TaskResult(task.task_id, TaskStatus.SUCCESS, payload, task.attempt)


def _object(objects: dict[bytes, bytes] | None, object_id: bytes) -> bytes:
    data = None if objects is None else objects.get(object_id)
    if data is None:
        raise LookupError(
            f"object {object_id.hex()} is not on this worker: it was deleted (or never sent) before the task ran"
        )
    return data


_MAX_TRACEBACK_CHARS = 1024 * 1024


def _failure(task: Task, error: BaseException) -> TaskResult:
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    if len(text) > _MAX_TRACEBACK_CHARS:  # a huge message repeats in the traceback: keep both ends
        half = _MAX_TRACEBACK_CHARS // 2
        text = text[:half] + "\n... (traceback truncated) ...\n" + text[-half:]
    kind = f"{type(error).__module__}.{type(error).__qualname__}"
    try:
        payload = cloudpickle.dumps((error, text), protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(payload)  # an exception that pickles but cannot be rebuilt must not break the client
        problem = f"is {len(payload)} bytes pickled, over the {MAX_PAYLOAD_BYTES} byte message limit"
        too_big = len(payload) > MAX_PAYLOAD_BYTES
    except BaseException as pickling_error:  # noqa: BLE001
        problem, too_big = f"cannot be pickled ({pickling_error})", True
    if too_big:
        summary = str(error)[:1000]
        message = f"the task raised {kind}: {summary}; it could not be sent back because it {problem}"
        tail = text[-8192:]  # where it was raised: enough to find the bug, small enough to always fit
        payload = cloudpickle.dumps((SerializationError(message), tail), protocol=pickle.HIGHEST_PROTOCOL)
    return TaskResult(task.task_id, TaskStatus.FAILED, payload, task.attempt)


def _exit_with_agent(agent_pid: int) -> None:
    # The fork server that started this process waits for it to exit, so its parent never changes:
    # watch the agent itself. A killed agent may linger as a zombie until its parent reaps it.
    # Not PR_SET_PDEATHSIG: it watches the parent (the fork server, not the agent), and its
    # signal would end the processor alone, leaving the task's programs. The one gap: a task
    # holding the GIL in C code for good stalls this thread, and the group lives on.
    try:
        agent = psutil.Process(agent_pid)
        while agent.is_running() and agent.status() != psutil.STATUS_ZOMBIE:
            time.sleep(0.25)
    except psutil.Error:
        pass
    kill_own_group()
