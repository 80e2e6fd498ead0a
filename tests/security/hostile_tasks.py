"""Task functions of the hostile-input tests; cloudpickled by value, since workers cannot import tests."""

from __future__ import annotations

import os
import time


def square_when_released(release: str, value: int, timeout: float = 60.0) -> int:
    """Mark ``{release}.started.{value}``, wait until the file ``release`` exists, return ``value**2``.

    Tasks that wait like this stay in flight for exactly as long as an attack lasts.
    """
    with open(f"{release}.started.{value}", "w"):
        pass
    deadline = time.monotonic() + timeout
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release} never appeared")
        time.sleep(0.005)
    return value * value


def length_when_released(release: str, data: bytes, timeout: float = 60.0) -> int:
    """Wait like ``square_when_released`` (without the start mark), then return ``len(data)``."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(release):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release} never appeared")
        time.sleep(0.005)
    return len(data)
