"""Fixtures that start real local clusters (scheduler and worker processes on loopback)."""

from __future__ import annotations

import collections.abc
import time

import cloudpickle
import psutil
import pytest

from scaler import Client, SchedulerClusterCombo
from tests.integration import tasks


def descendants() -> set[int]:
    """Pids of every live process below this test process."""
    alive = set()
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                alive.add(child.pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def wait_no_descendants(before: set[int], timeout: float = 10.0) -> set[int]:
    """Wait until no process started since ``before`` is alive; return those still alive."""
    gone_deadline = time.monotonic() + timeout
    left = descendants() - before
    while left and time.monotonic() < gone_deadline:
        psutil.wait_procs([psutil.Process(pid) for pid in left if psutil.pid_exists(pid)], timeout=0.2)
        left = descendants() - before
    return left


@pytest.fixture(scope="module")
def combo() -> collections.abc.Iterator[SchedulerClusterCombo]:
    """A 2-worker local cluster shared by a test module."""
    with SchedulerClusterCombo(n_workers=2, logging_level="WARNING") as cluster:
        yield cluster


@pytest.fixture
def client(combo: SchedulerClusterCombo) -> collections.abc.Iterator[Client]:
    """A fresh client of the module's cluster."""
    with Client(address=combo.get_address(), timeout_seconds=10) as connected:
        yield connected


cloudpickle.register_pickle_by_value(tasks)  # the workers cannot import the tests package
