"""ResourceSampler counts the worker's processors, not only its agent."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from scaler.worker.processes import ResourceSampler

pytestmark = pytest.mark.timeout(60)


def test_a_busy_child_shows_in_the_workers_cpu_and_memory() -> None:
    sampler = ResourceSampler(interval=0.0)
    idle_cpu, idle_rss = sampler.sample(0.0)
    # A child that burns CPU and holds 64 MiB, as a processor running a task would.
    child = subprocess.Popen(
        [sys.executable, "-c", "b = bytearray(64 * 2**20)\nwhile True: pass"],
    )
    try:
        time.sleep(0.5)
        sampler.sample(1.0)  # first reading of the child: psutil measures CPU from here
        time.sleep(1.0)
        cpu, rss = sampler.sample(2.0)
    finally:
        child.kill()
        child.wait()
    assert cpu > 20.0, cpu  # the child alone uses most of a core; the test process itself sits idle
    assert rss > idle_rss + 50 * 2**20
    # Once it ended, it drops out.
    time.sleep(0.1)
    assert sampler.sample(3.0)[1] < idle_rss + 50 * 2**20
