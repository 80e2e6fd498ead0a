"""A local cluster forked from one boot process (``scaler.cluster.boot``): same processes, same guarantees."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from scaler import Client, SchedulerClusterCombo
from scaler.cluster.boot import ForkedProcess
from tests.integration.conftest import descendants, wait_no_descendants

REPOSITORY = Path(__file__).resolve().parents[2]


def _square(x: int) -> int:
    return x * x


def _tree(pid: int) -> set[int]:
    try:
        process = psutil.Process(pid)
        return {pid, *(child.pid for child in process.children(recursive=True))}
    except psutil.NoSuchProcess:
        return set()


def _wait_gone(pids: set[int], timeout: float = 15.0) -> set[int]:
    deadline = time.monotonic() + timeout
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {pid for pid in alive if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"}
        time.sleep(0.05)
    return alive


@pytest.mark.timeout(60)
def test_the_workers_are_forked_by_the_scheduler_each_in_its_own_session_with_a_forked_fork_server() -> None:
    before = descendants()
    combo = SchedulerClusterCombo(n_workers=2, logging_level="WARNING")
    with combo, Client(combo.get_address()) as client:
        assert client.submit(_square, 7).result(timeout=30) == 49
        scheduler = psutil.Process(combo.scheduler_pid())
        workers = combo.worker_pids()
        assert len(workers) == 2
        for pid in workers:
            worker = psutil.Process(pid)
            assert worker.ppid() == scheduler.pid  # forked by the boot process, which became the scheduler
            assert os.getsid(pid) == pid  # its own session: a Ctrl-C at the caller's terminal misses it
            assert "scaler.cluster.boot" in worker.cmdline()
        # The fork server that made the processor is a fork of the worker (its command line is
        # the boot's), not a fresh interpreter that imports everything again.
        ran_on = [pid for pid in workers if any(len(_tree(child.pid)) > 1 for child in psutil.Process(pid).children())]
        assert ran_on, "one worker ran the task: its fork server has a processor below it"
        servers = [child for child in psutil.Process(ran_on[0]).children() if len(_tree(child.pid)) > 1]
        assert "scaler.cluster.boot" in servers[0].cmdline()
    assert wait_no_descendants(before) == set()


@pytest.mark.timeout(60)
def test_a_sigkilled_caller_takes_the_scheduler_and_the_forked_workers_with_it() -> None:
    code = textwrap.dedent(
        """
        import json, time
        from scaler import Client, SchedulerClusterCombo
        combo = SchedulerClusterCombo(n_workers=2, logging_level="WARNING")
        client = Client(combo.get_address())
        assert client.submit(abs, -3).result(timeout=30) == 3
        print(json.dumps([combo.scheduler_pid(), *combo.worker_pids()]), flush=True)
        time.sleep(600)
        """
    )
    with subprocess.Popen([sys.executable, "-c", code], cwd=REPOSITORY, stdout=subprocess.PIPE, text=True) as caller:
        assert caller.stdout is not None
        line = caller.stdout.readline()
        pids = [int(pid) for pid in line.strip().strip("[]").split(",")]
        touched = set().union(*(_tree(pid) for pid in pids))
        assert len(pids) == 3 and len(touched) >= 3
        caller.send_signal(signal.SIGKILL)
    assert _wait_gone(touched) == set()


@pytest.mark.timeout(60)
def test_shutdown_stops_forked_workers_that_no_longer_answer_and_leaves_nothing() -> None:
    before = descendants()
    combo = SchedulerClusterCombo(n_workers=2, logging_level="WARNING")
    workers = combo.worker_pids()
    touched = set().union(*(_tree(pid) for pid in workers))
    os.kill(workers[0], signal.SIGSTOP)  # deaf to the scheduler's goodbye and to SIGTERM: killed after the grace
    try:
        combo.shutdown()
    finally:
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    assert _wait_gone(touched) == set()
    assert wait_no_descendants(before) == set()


@pytest.mark.timeout(30)
def test_a_forked_process_handle_acts_as_popen_for_a_process_that_is_not_our_child() -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        handle = ForkedProcess(sleeper.pid)
        assert handle.poll() is None
        with pytest.raises(subprocess.TimeoutExpired):
            handle.wait(timeout=0.05)
        handle.terminate()
        sleeper.wait(timeout=10)  # we are its parent here: reaped, it is gone for the handle
        assert handle.wait(timeout=5) == 0 and handle.poll() == 0
        handle.kill()  # ended: nothing to signal, and no error
    finally:
        sleeper.kill()
        sleeper.wait()
    assert ForkedProcess(sleeper.pid).poll() == 0 or not psutil.pid_exists(sleeper.pid)


@pytest.mark.timeout(60)
def test_a_boot_process_killed_at_once_leaves_a_combo_that_still_shuts_down_cleanly() -> None:
    before = descendants()
    combo = SchedulerClusterCombo(n_workers=2, logging_level="WARNING")
    os.kill(combo.scheduler_pid(), signal.SIGKILL)  # most likely still importing: no worker forked, none reported
    workers = combo.worker_pids()
    assert len(workers) in (0, 2)
    touched = set().union(*(_tree(pid) for pid in workers))
    combo.shutdown()
    assert _wait_gone(touched) == set()
    assert wait_no_descendants(before) == set()


@pytest.mark.timeout(60)
def test_a_boot_process_that_never_reports_does_not_hang_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("scaler.cluster.combo.BOOT_REPORT_SECONDS", 0.5)
    before = descendants()
    combo = SchedulerClusterCombo(n_workers=1, logging_level="WARNING")
    os.kill(combo.scheduler_pid(), signal.SIGSTOP)  # stuck before its report, as if its imports hung
    started = time.monotonic()
    assert combo.worker_pids() == []
    assert time.monotonic() - started < 5
    combo.shutdown()  # SIGTERM stays pending on a stopped process: it is killed after 5 s
    assert wait_no_descendants(before) == set()
