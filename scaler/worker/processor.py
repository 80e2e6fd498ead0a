"""The processor: a subprocess of a worker agent that runs tasks one at a time.

It reads ``Task`` frames from a pipe, unpickles each function once (with the client's
serializer, which travels with it), runs the task and writes back one ``TaskResult`` frame.
A task's exception comes back pickled together with its traceback text. If the agent dies,
a watchdog thread ends the processor so no orphan outlives its worker.
"""

from __future__ import annotations

import logging
import os
import pickle
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

import cloudpickle
import psutil

from scaler.errors import SerializationError
from scaler.protocol.codec import MAX_PAYLOAD_BYTES, decode, encode_one
from scaler.protocol.messages import Task, TaskResult, TaskStatus

logger = logging.getLogger(__name__)

_Function = tuple[Any, Any]  # (callable, serializer)


def run_processor(connection: Connection, agent_pid: int) -> None:
    """Entry point of the processor subprocess."""
    threading.Thread(target=_exit_with_agent, args=(agent_pid,), daemon=True, name="agent-watchdog").start()
    functions: dict[bytes, _Function] = {}
    while True:
        try:
            frame = connection.recv_bytes()
        except (EOFError, OSError):
            return
        for task in decode(frame):
            assert isinstance(task, Task)
            connection.send_bytes(encode_one(execute(task, functions)))


def execute(task: Task, functions: dict[bytes, _Function]) -> TaskResult:
    """Run one task and always return its result; never raise."""
    try:
        if task.function:
            functions[task.function_id] = pickle.loads(task.function)
        function, serializer = functions[task.function_id]
        args = []
        kwargs = {}
        for argument in task.args:
            value = serializer.deserialize(argument.data)
            if argument.name:
                kwargs[argument.name] = value
            else:
                args.append(value)
    except BaseException as error:  # noqa: BLE001 - a bad payload must not kill the processor
        return _failure(task, error)
    try:
        value = function(*args, **kwargs)
    except BaseException as error:  # noqa: BLE001 - report whatever the user code raised
        return _failure(task, error)
    try:
        payload = serializer.serialize(value)
    except BaseException as error:  # noqa: BLE001
        message = f"the task returned a {type(value).__qualname__} that cannot be serialized: {error}"
        return _failure(task, SerializationError(message))
    if len(payload) > MAX_PAYLOAD_BYTES:
        message = f"the task's result is {len(payload)} bytes, over the {MAX_PAYLOAD_BYTES} byte message limit"
        return _failure(task, SerializationError(message))
    return TaskResult(task.task_id, TaskStatus.SUCCESS, payload, task.attempt)


def _failure(task: Task, error: BaseException) -> TaskResult:
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    try:
        payload = cloudpickle.dumps((error, text), protocol=pickle.HIGHEST_PROTOCOL)
        pickle.loads(payload)  # an exception that pickles but cannot be rebuilt must not break the client
    except BaseException as pickling_error:  # noqa: BLE001
        message = (
            f"the task raised {type(error).__module__}.{type(error).__qualname__}: {error}; "
            f"it could not be sent back because it cannot be pickled ({pickling_error})"
        )
        payload = cloudpickle.dumps((SerializationError(message), text), protocol=pickle.HIGHEST_PROTOCOL)
    return TaskResult(task.task_id, TaskStatus.FAILED, payload, task.attempt)


def _exit_with_agent(agent_pid: int) -> None:
    # The fork server that started this process waits for it to exit, so its parent never changes:
    # watch the agent itself. A killed agent may linger as a zombie until its parent reaps it.
    try:
        agent = psutil.Process(agent_pid)
        while agent.is_running() and agent.status() != psutil.STATUS_ZOMBIE:
            time.sleep(0.25)
    except psutil.Error:
        pass
    os._exit(1)
