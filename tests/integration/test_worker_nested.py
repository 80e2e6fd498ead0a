"""Nested tasks end to end: tasks that submit tasks and wait for them, on a real local cluster.

Each task opens its own client to the worker's scheduler (``processor_context.scheduler_address``)
and wraps its wait in ``processor_context.blocked()``, so its worker parks it and runs the children
meanwhile. Without parking, fib(8) on 2 workers deadlocks: every worker's slot holds a waiting parent.
"""

from __future__ import annotations

import sys

import cloudpickle
import pytest

from scaler import Client, SchedulerClusterCombo
from scaler.worker import processor_context
from tests.integration.conftest import descendants, wait_no_descendants

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import the tests package


def fib(n: int) -> int:
    if n < 2:
        return n
    with Client(address=processor_context.scheduler_address(), timeout_seconds=30) as client:
        first = client.submit(fib, n - 1)
        second = client.submit(fib, n - 2)
        with processor_context.blocked():
            return first.result() + second.result()


def depth(n: int) -> int:
    if n == 0:
        return 0
    with Client(address=processor_context.scheduler_address(), timeout_seconds=30) as client:
        child = client.submit(depth, n - 1)
        with processor_context.blocked():
            return child.result() + 1


@pytest.mark.parametrize(("function", "argument", "workers", "expected"), [(fib, 8, 2, 21), (depth, 10, 3, 10)])
def test_nested_tasks_do_not_deadlock(function: object, argument: int, workers: int, expected: int) -> None:
    before = descendants()
    with (
        SchedulerClusterCombo(n_workers=workers, logging_level="WARNING") as combo,
        Client(address=combo.get_address(), timeout_seconds=30) as client,
    ):
        assert client.submit(function, argument).result(timeout=50) == expected
        # The workers are free afterwards.
        assert client.submit(fib, 1).result(timeout=10) == 1
    assert wait_no_descendants(before) == set()
