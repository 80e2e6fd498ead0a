"""Start-up: where a worker's processors come from, and that nothing outlives the cluster.

A worker agent forks a zygote (``scaler/worker/zygote.py``) before it starts any thread, and
every processor is forked from it: no fork server interpreter, no resource tracker. These tests
check that shape on a real cluster, and that the zygote and its processors end with the agent,
whether the cluster is shut down or the agent is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import psutil
import pytest

from scaler import Client, SchedulerClusterCombo
from scaler.protocol.messages import WorkerHeartbeat
from tests.integration.conftest import descendants, wait_no_descendants


def _wait_gone(pids: set[int], timeout: float) -> set[int]:
    deadline = time.monotonic() + timeout
    alive = {pid for pid in pids if psutil.pid_exists(pid)}
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = {pid for pid in alive if psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"}
    return alive


@pytest.mark.timeout(60)
def test_processors_are_forked_from_a_zygote_below_the_agent_and_end_with_the_cluster() -> None:
    before = descendants()
    with SchedulerClusterCombo(n_workers=1, logging_level="WARNING") as combo:
        with Client(address=combo.get_address(), timeout_seconds=30) as client:
            processor = client.submit(os.getpid).result(timeout=30)
        (agent_pid,) = combo.worker_pids()
        agent = psutil.Process(agent_pid)
        zygote = psutil.Process(processor).parent()
        assert zygote is not None and zygote.parent() == agent  # agent -> zygote -> processor
        below = agent.children(recursive=True)
        command_lines = [" ".join(child.cmdline()) for child in below]
        assert not any("multiprocessing" in line for line in command_lines)  # no fork server, no tracker
        pids = {agent_pid, zygote.pid, processor}
    assert wait_no_descendants(before) == set()
    assert _wait_gone(pids, 10.0) == set()


@pytest.mark.timeout(60)
def test_a_killed_agent_takes_its_zygote_and_processors_along() -> None:
    combo = SchedulerClusterCombo(n_workers=1, logging_level="WARNING")
    with combo, Client(address=combo.get_address(), timeout_seconds=30) as client:
        processor = client.submit(os.getpid).result(timeout=30)
        (agent_pid,) = combo.worker_pids()
        zygote = psutil.Process(processor).parent()
        assert zygote is not None
        os.kill(agent_pid, signal.SIGKILL)
        assert _wait_gone({agent_pid, zygote.pid, processor}, 15.0) == set()


_ZYGOTE_SCRIPT = textwrap.dedent(
    """
    import multiprocessing, os, sys
    from scaler.worker import zygote
    from scaler.worker.processes import _ZygoteChild

    def answer(connection, value):
        name = multiprocessing.current_process().name
        connection.send_bytes(f"{value} {os.getppid()} {len(sys.stdin.read())} {name}".encode())
        connection.recv_bytes()  # until told to end

    def fail(connection):
        raise SystemExit(3)

    assert zygote.available()
    forked = zygote.Zygote()
    ours, theirs = multiprocessing.Pipe()
    child = _ZygoteChild(*forked.fork(answer, (42,), theirs.fileno(), "child-42"))
    theirs.close()
    value, parent, stdin, name = ours.recv_bytes().decode().split()
    assert name == "child-42"  # what its log lines show as processName
    assert value == "42" and int(parent) == forked.pid, (value, parent, forked.pid)
    assert stdin == "0"  # an end of file, not what the script's stdin holds
    assert child.is_alive()
    child.kill()
    child.join(5)
    assert not child.is_alive()
    child.close()
    ours, theirs = multiprocessing.Pipe()
    failed = _ZygoteChild(*forked.fork(fail, (), theirs.fileno()))
    theirs.close()
    failed.join(5)
    assert not failed.is_alive()
    forked.close()
    assert not os.path.exists(f"/proc/{forked.pid}")
    print("ok", failed.pid)
    """
)


@pytest.mark.timeout(60)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the zygote needs pidfds (Linux)")
def test_a_zygote_forks_children_that_it_reaps_and_stops_when_closed() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _ZYGOTE_SCRIPT], input="not for the children", capture_output=True, text=True, timeout=50
    )
    assert done.returncode == 0, done.stderr
    word, pid = done.stdout.split()
    assert word == "ok" and not psutil.pid_exists(int(pid))  # reaped by the zygote, not left a zombie


@pytest.mark.timeout(60)
def test_a_worker_announces_itself_only_once_its_first_processor_is_ready() -> None:
    # The scheduler counts a worker from its first heartbeat on: announced any earlier, it could
    # be handed the first task while another worker, ready, sits idle.
    from tests.integration.test_worker_agent import FakeScheduler

    before = descendants()
    fake = FakeScheduler("--heartbeat-interval-seconds=10")  # its cap on the wait: far off
    try:
        first = next(message for message in fake.received if isinstance(message, WorkerHeartbeat))
        assert first.processors_idle == 1
    finally:
        fake.close()
    assert wait_no_descendants(before) == set()
