"""A bug in the worker agent: a handler that raises part-way stops the worker loudly, as a death.

The worker runs as a real subprocess whose ``WorkerState`` has a bug injected: reporting a result
raises after it began to build its output. The agent must not serve on from a state that may be
half-updated. It exits with an error status and a critical log line, leaves no processor behind,
and says no goodbye, so the scheduler counts it as dead: a task that trips the bug uses up its
retries instead of being requeued free of charge forever.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from scaler import Client
from scaler.errors import WorkerDiedError
from scaler.io.sockets import free_tcp_address
from scaler.scheduler.server import SchedulerServer
from scaler.scheduler.state import SchedulerConfig
from tests.integration.conftest import descendants, wait_no_descendants

_BUGGY_WORKER = """
import sys
from scaler.worker.state import WorkerState

def broken_report(self, result, out):
    out.append("half-made output")
    raise RuntimeError("injected bug: a handler raised part-way")

WorkerState._report = broken_report
from scaler.cli.worker import main
main([sys.argv[1], "--exit-with-parent"])
"""


@pytest.mark.timeout(60)
def test_a_worker_whose_handler_raises_stops_loudly_and_counts_as_dead() -> None:
    before = descendants()
    server = SchedulerServer(free_tcp_address(), SchedulerConfig(max_task_retries=0), check_invariants=True)
    serving = threading.Thread(target=server.run, name="scheduler", daemon=True)
    serving.start()
    worker = None
    try:
        with Client(address=server.address, timeout_seconds=30) as client:
            future = client.submit(abs, -3)  # queued until the worker joins
            worker = subprocess.Popen(
                [sys.executable, "-c", _BUGGY_WORKER, server.address],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            errors, _ = worker.communicate(timeout=30)
            assert worker.returncode != 0, "the worker went on after a bug"
            assert "stopped on an error; leaving without a goodbye" in errors
            assert "injected bug: a handler raised part-way" in errors
            # No goodbye: the scheduler saw a death. With no retries left, the task fails; a
            # polite leave would have requeued it free of charge.
            with pytest.raises(WorkerDiedError):
                future.result(timeout=30)
        assert server.invariant_failures == []
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
        server.stop()
        serving.join(timeout=10)
    assert wait_no_descendants(before) == set(), "the worker left a processor behind"
