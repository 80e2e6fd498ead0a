"""The scheduler process's collector setting (``scaler/utility/gc_policy.py``) still frees cyclic garbage.

Run in a fresh interpreter: the settings are process-wide, and this test process keeps its own.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import gc
    from scaler.utility.gc_policy import freeze_start_up_objects

    freed = 0

    class Node:
        def __init__(self):
            self.me = self  # a cycle: only the cyclic collector frees it

        def __del__(self):
            global freed
            freed += 1

    before = Node()  # exists at start-up: frozen, kept for good, as everything the process made so far
    threshold = gc.get_threshold()
    freeze_start_up_objects()
    assert gc.get_threshold() == threshold and gc.get_freeze_count() > 0
    for _ in range(200_000):
        Node()
    assert freed >= 190_000, freed  # collected on its own, as often as before, without gc.collect()
    gc.collect()
    assert freed == 200_000, freed  # and every one of them in the end
    print("ok")
    """
)


@pytest.mark.timeout(120)
def test_cyclic_garbage_is_still_collected_on_its_own() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
