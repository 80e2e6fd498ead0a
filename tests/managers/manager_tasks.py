"""Task functions for the worker manager tests (shipped to workers by value).

Each names the worker it ran on: a manager's adapters put the worker's name in
``SCALER_WORKER_NAME``, which its processors inherit.
"""

from __future__ import annotations

import os
import time


def worker_name(seconds: float = 0.0) -> str:
    """Sleep, then return the name of the worker this ran on."""
    time.sleep(seconds)
    return os.environ.get("SCALER_WORKER_NAME", "")


def marked_sleep(directory: str, index: int, seconds: float) -> tuple[int, str]:
    """Write ``directory/START-index-WORKER-PID`` first, sleep, then return ``(index, worker)``."""
    name = os.environ.get("SCALER_WORKER_NAME", "")
    with open(os.path.join(directory, f"start-{index}-{name}-{os.getpid()}"), "w"):
        pass
    time.sleep(seconds)
    return index, name
