"""Task functions for the CURVE tests (pickled by value: the workers cannot import the tests package)."""

from __future__ import annotations

import os
from typing import Any


def processor_pid() -> int:
    """The pid of the processor that runs the task."""
    return os.getpid()


def nested_pow(exponent: int) -> int:
    """2 ** exponent, computed by a task that this task submits through ``Client()``."""
    from scaler import Client

    with Client(timeout_seconds=20) as client:
        return int(client.submit(pow, 2, exponent).result(timeout=20))


def pow_through(client: Any, exponent: int) -> int:
    """3 ** exponent, submitted through a client passed to this task as an argument."""
    return int(client.submit(pow, 3, exponent).result(timeout=20))
