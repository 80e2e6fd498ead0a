"""``utility/malloc_policy.py``: glibc's thresholds are set in scaler's own processes, and never fail them."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest


@pytest.mark.timeout(30)
def test_keep_freed_memory_sets_glibcs_thresholds_or_does_nothing() -> None:
    # In a child: the test process's own allocator is left as it is.
    code = "from scaler.utility.malloc_policy import keep_freed_memory as k; print(k(), k())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    expected = "True True" if platform.libc_ver()[0] == "glibc" else "False False"
    assert done.stdout.strip() == expected
