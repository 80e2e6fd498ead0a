"""The native adapter and the manager command with real worker processes and a real scheduler on loopback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from scaler import Client
from scaler.config.worker import WorkerConfig
from scaler.protocol.messages import ManagedWorkerState
from scaler.worker_manager.adapter import WorkerCommand
from scaler.worker_manager.native import NativeAdapter
from tests.managers import manager_tasks
from tests.managers.support import (
    connected_times,
    env_with_worktree,
    pid_alive,
    scale_cycle,
    scheduler_process,
    started_marks,
    wait_for_names,
    wait_mark_on,
)


def start_logged(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env_with_worktree())


def wait_gone(pid: int, timeout: float = 20.0) -> float:
    started = time.monotonic()
    while pid_alive(pid):
        assert time.monotonic() - started < timeout, f"process {pid} did not exit"
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_named_workers_join_one_drains_on_stop_and_a_new_adapter_adopts_the_other(tmp_path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    with scheduler_process(tmp_path / "scheduler.log") as address:
        command = WorkerCommand(WorkerConfig(address=address, heartbeat_interval_seconds=0.5, logging_level="INFO"))
        adapter = NativeAdapter("nat", command, tmp_path / "state")
        survivor_pid = None
        try:
            asked, asked_wall = time.monotonic(), time.time()
            adapter.start("nat.a")
            adapter.start("nat.b")
            assert {name: status.state for name, status in adapter.poll().items()} == {
                "nat.a": ManagedWorkerState.RUNNING,
                "nat.b": ManagedWorkerState.RUNNING,
            }
            with Client(address=address, timeout_seconds=30, heartbeat_interval_seconds=0.5) as client:
                wait_for_names(client, {"nat.a", "nat.b"})
                joined = time.monotonic() - asked
                connected = max(connected_times(tmp_path / "scheduler.log", {"nat.a", "nat.b"}).values()) - asked_wall
                futures = [client.submit(manager_tasks.marked_sleep, str(marks), i, 1.0) for i in range(6)]
                running = wait_mark_on(marks, "nat.a")
                victim = adapter.pid("nat.a")
                assert victim is not None
                adapter.stop("nat.a")
                stopped_at = time.monotonic()
                gone_after = wait_gone(victim)
                results = [future.result(timeout=60) for future in futures]
                assert [index for index, _ in results] == list(range(6))  # no task lost
                assert dict(results)[running] == "nat.a"  # the running task finished where it ran
            starts = sorted(index for index, _ in started_marks(marks))
            assert starts == list(range(6)), "each task started exactly once: none was restarted"
            assert "nat.a" not in adapter.poll()  # ended when asked: not a failure
            survivor_pid = adapter.pid("nat.b")
            adapter.close()

            # A manager started again (a new adapter on the same state directory) adopts the survivor.
            again = NativeAdapter("nat", command, tmp_path / "state")
            assert again.adopt() == ["nat.b"]
            assert again.pid("nat.b") == survivor_pid
            with Client(address=address, timeout_seconds=30) as client:
                wait_for_names(client, {"nat.b"})
            again.stop("nat.b")
            idle_gone_after = wait_gone(survivor_pid)
            assert again.poll() == {}
            again.close()
        finally:
            for pid in (adapter.pid("nat.a"), adapter.pid("nat.b"), survivor_pid):
                if pid is not None and pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
    print(
        f"\n[native] 2 workers asked for -> both connected after {connected:.2f} s, both ran a task after "
        f"{joined:.2f} s; "
        f"stop (SIGTERM) -> worker gone {gone_after:.2f} s later, after its running task (1 s) finished "
        f"(stop asked {stopped_at - asked:.1f} s after start); an idle worker was gone {idle_gone_after:.2f} s "
        "after its SIGTERM"
    )


@pytest.mark.timeout(60)
def test_a_worker_that_exits_with_an_error_is_failed_with_its_last_log_line_and_a_reused_pid_is_not_adopted(
    tmp_path,
) -> None:
    command = WorkerCommand(WorkerConfig(address="tcp://127.0.0.1:1"), python="/nonexistent/python")
    adapter = NativeAdapter("bad", command, tmp_path)
    adapter.start("bad.x")
    status = adapter.poll()["bad.x"]
    assert status.state == ManagedWorkerState.FAILED and "could not start" in status.detail
    adapter.forget("bad.x")
    assert adapter.poll() == {}

    # A worker that starts and exits with an error: FAILED, with the last line it wrote.
    failing = WorkerCommand(WorkerConfig(address="tcp://127.0.0.1:1"), python=sys.executable)
    adapter.command = failing
    adapter.start("bad.y")
    pid = adapter.pid("bad.y")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while "bad.y" not in adapter.poll() or adapter.poll()["bad.y"].state != ManagedWorkerState.FAILED:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "exited with code -9" in adapter.poll()["bad.y"].detail
    adapter.close()

    # A state file naming a live process that is not that worker (a reused pid) adopts nothing.
    (tmp_path / "bad.json").write_text(
        json.dumps({"workers": {"bad.z": {"pid": os.getpid(), "create_time": psutil.Process().create_time()}}})
    )
    restarted = NativeAdapter("bad", command, tmp_path)
    assert restarted.adopt() == []
    restarted.close()


@pytest.mark.timeout(30)
def test_two_managers_of_one_name_cannot_share_a_state_directory(tmp_path) -> None:
    command = WorkerCommand(WorkerConfig(address="tcp://127.0.0.1:1"))
    first = NativeAdapter("same", command, tmp_path)
    with pytest.raises(RuntimeError, match="another worker manager"):
        NativeAdapter("same", command, tmp_path)
    first.close()
    NativeAdapter("same", command, tmp_path).close()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_command_starts_its_minimum_and_after_it_is_killed_a_restart_adopts_them_instead_of_starting_more(
    tmp_path,
) -> None:
    state = tmp_path / "state"
    with scheduler_process(tmp_path / "scheduler.log") as address:
        argv = [
            sys.executable, "-m", "scaler.cli.worker_manager", "native", address, "--name=cmd",
            "--min-workers=2", "--max-workers=2", f"--native-state-dir={state}", "--poll-interval-seconds=0.3",
            "--heartbeat-interval-seconds=0.5",
        ]  # fmt: skip
        log = tmp_path / "manager.log"
        pids: list[int] = []
        managers: list[subprocess.Popen[bytes]] = []
        try:
            asked = time.monotonic()
            first = start_logged(argv, log)
            managers.append(first)
            with Client(address=address, timeout_seconds=30) as client:
                deadline = time.monotonic() + 30
                while len(list(state.glob("cmd.*.log"))) < 2:
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.05)
                workers = {path.name[: -len(".log")] for path in state.glob("cmd.*.log")}
                wait_for_names(client, workers)
                joined = time.monotonic() - asked
                pids = [proc.pid for proc in psutil.Process(first.pid).children()]
                assert len(pids) == 2
                first.kill()  # the manager dies: no clean-up of its own runs
                assert first.wait(timeout=15) == -signal.SIGKILL
                assert all(pid_alive(pid) for pid in pids), "a manager that dies does not take its workers with it"
                wait_for_names(client, workers)  # and they still serve

                second = start_logged(argv, log)
                managers.append(second)
                deadline = time.monotonic() + 30
                while "adopted 2 workers" not in log.read_text():
                    assert time.monotonic() < deadline, log.read_text()
                    time.sleep(0.05)
                time.sleep(1.0)  # several polls: it must not start more, the minimum is already there
                assert psutil.Process(second.pid).children() == []
                assert len(list(state.glob("cmd.*.log"))) == 2
                second.send_signal(signal.SIGTERM)
                assert second.wait(timeout=15) == 0
        finally:
            for manager in managers:  # a failed check leaves none running
                if manager.poll() is None:
                    manager.kill()
                    manager.wait()
            for pid in pids:
                if pid_alive(pid):
                    os.kill(pid, signal.SIGTERM)
            for pid in pids:
                wait_gone(pid)
    print(f"\n[native, scaler_worker_manager] --min-workers 2: both workers ran a task {joined:.2f} s after start")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_manager_grows_to_its_target_drains_a_named_busy_worker_and_shrinks_to_zero(tmp_path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    log = tmp_path / "scheduler.log"
    with scheduler_process(log) as address:
        command = WorkerCommand(WorkerConfig(address=address, heartbeat_interval_seconds=0.5, logging_level="INFO"))
        adapter = NativeAdapter("cyc", command, tmp_path / "state")
        figures = scale_cycle(adapter, "cyc", address, log, marks, 3)
    print(
        f"\n[native, manager] target 0 -> 3: all connected {figures.connected:.2f} s after the command; a busy "
        f"worker stopped -> gone from the heartbeat {figures.busy_stop:.2f} s later (its 1 s task finished first); "
        f"the 2 idle ones -> {figures.idle_stop:.2f} s"
    )
