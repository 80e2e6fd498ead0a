"""The slurm adapter against a real single-node Slurm (see conftest.py): worker jobs that join a real scheduler.

Covers: jobs that start and join; a job scaled down by ``scancel --batch --signal=TERM`` that drains
(its running task finishes, nothing is lost or restarted); draining back to none; a job Slurm kills
(its tasks run again elsewhere); jobs that never start (refused by sbatch, or pending for a reason
that never clears): reported FAILED with why, cancelled, and the manager goes on.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from scaler import Client
from scaler.config.worker import WorkerConfig
from scaler.protocol.messages import ManagedWorkerState, WorkerManagerCommand
from scaler.worker_manager.adapter import WorkerCommand
from scaler.worker_manager.manager import WorkerManager
from scaler.worker_manager.slurm import SlurmAdapter, SlurmOptions, parse_scontrol, scontrol_argv
from tests.managers import manager_tasks
from tests.managers.support import (
    FakeScheduler,
    connected_times,
    env_with_worktree,
    scale_cycle,
    scheduler_process,
    started_marks,
    wait_for_names,
    wait_mark_on,
)
from tests.slurm.bed import SlurmBed

pytestmark = [pytest.mark.slow, pytest.mark.slurm]


def adapter_for(address: str, tmp_path: Path, name: str = "slm", **options: object) -> SlurmAdapter:
    command = WorkerCommand(WorkerConfig(address=address, heartbeat_interval_seconds=0.5, logging_level="INFO"))
    return SlurmAdapter(name, command, SlurmOptions(output=str(tmp_path / "%x-%j.out"), **options))  # type: ignore[arg-type]


def wait_states(adapter: SlurmAdapter, want: dict[str, ManagedWorkerState], timeout: float = 30.0) -> float:
    started = time.monotonic()
    while True:
        seen = {name: status.state for name, status in adapter.poll().items()}
        if seen == want:
            return time.monotonic() - started
        assert time.monotonic() - started < timeout, f"jobs are {seen}, not {want}"
        time.sleep(0.1)


def job_state(slurm: SlurmBed, job_id: str) -> dict[str, str]:
    return parse_scontrol(slurm.run(*scontrol_argv(job_id), check=False))


@pytest.mark.timeout(150)
def test_worker_jobs_join_run_tasks_drain_one_on_scancel_term_then_all_with_no_task_lost(empty_queue, tmp_path):
    slurm = empty_queue
    marks = tmp_path / "marks"
    marks.mkdir()
    log = tmp_path / "scheduler.log"
    names = {"slm.a", "slm.b", "slm.c"}
    with scheduler_process(log) as address:
        adapter = adapter_for(address, tmp_path)
        asked, asked_wall = time.monotonic(), time.time()
        for name in sorted(names):
            adapter.start(name)
        assert all(adapter.job_id(name) for name in names)
        running_after = wait_states(adapter, dict.fromkeys(names, ManagedWorkerState.RUNNING))
        connected = max(connected_times(log, names).values()) - asked_wall
        with Client(address=address, timeout_seconds=60, heartbeat_interval_seconds=0.5) as client:
            wait_for_names(client, names)
            joined = time.monotonic() - asked
            futures = [client.submit(manager_tasks.marked_sleep, str(marks), i, 1.5) for i in range(9)]
            running = wait_mark_on(marks, "slm.a")
            victim = adapter.job_id("slm.a")
            assert victim is not None
            adapter.stop("slm.a")  # scancel --batch --signal=TERM: the exec'ed worker drains
            signalled = time.monotonic()
            wait_states(adapter, {"slm.b": ManagedWorkerState.RUNNING, "slm.c": ManagedWorkerState.RUNNING})
            gone_after = time.monotonic() - signalled
            results = [future.result(timeout=60) for future in futures]
            assert [index for index, _ in results] == list(range(9)), "no task lost"
            assert dict(results)[running] == "slm.a", "the task running at the TERM finished there"
            assert job_state(slurm, victim).get("JobState") == "COMPLETED"  # the worker exited 0 after draining

            # Drain back to none while the last two tasks run, one on each: both still finish.
            more = [client.submit(manager_tasks.marked_sleep, str(marks), i, 1.5) for i in (9, 10)]
            wait_mark_on(marks, "slm.b")
            wait_mark_on(marks, "slm.c")
            adapter.stop("slm.b")
            adapter.stop("slm.c")
            wait_states(adapter, {}, timeout=60)
            finished = [future.result(timeout=60) for future in more]
            assert {index for index, _ in finished} == {9, 10} and {name for _, name in finished} == {"slm.b", "slm.c"}
        starts = sorted(index for index, _ in started_marks(marks))
        assert starts == list(range(11)), "each task started once: none restarted by the scale-down"
    print(
        f"\n[slurm] 3 worker jobs asked for -> all RUNNING in squeue after {running_after:.2f} s, connected after "
        f"{connected:.2f} s, all ran a task after {joined:.2f} s; scancel --batch --signal=TERM -> job gone "
        f"{gone_after:.2f} s later (its running 1.5 s task finished first)"
    )


@pytest.mark.timeout(120)
def test_a_job_slurm_kills_has_its_tasks_run_elsewhere_and_is_reported(empty_queue, tmp_path):
    slurm = empty_queue
    marks = tmp_path / "marks"
    marks.mkdir()
    log = tmp_path / "scheduler.log"
    with scheduler_process(log, "--worker-timeout-seconds=5") as address:
        adapter = adapter_for(address, tmp_path, name="kil")
        adapter.start("kil.a")
        adapter.start("kil.b")
        with Client(address=address, timeout_seconds=60, heartbeat_interval_seconds=0.5) as client:
            wait_for_names(client, {"kil.a", "kil.b"})
            futures = [client.submit(manager_tasks.marked_sleep, str(marks), i, 1.0) for i in range(6)]
            killed_task = wait_mark_on(marks, "kil.a")
            victim = adapter.job_id("kil.a")
            assert victim is not None
            slurm.run("scancel", "--signal=KILL", victim)
            results = [future.result(timeout=90) for future in futures]
        assert [index for index, _ in results] == list(range(6)), "every task finished: retried elsewhere"
        assert dict(results)[killed_task] == "kil.b", "the task running on the killed job ran again on the other"
        assert sorted(name for index, name in started_marks(marks) if index == killed_task) == ["kil.a", "kil.b"]
        deadline = time.monotonic() + 20
        while (status := adapter.poll().get("kil.a")) is None or status.state != ManagedWorkerState.FAILED:
            assert time.monotonic() < deadline, adapter.poll()
            time.sleep(0.2)
        assert f"job {victim} ended" in status.detail
        adapter.stop("kil.b")
        wait_states(adapter, {"kil.a": ManagedWorkerState.FAILED}, timeout=30)
    print(f"\n[slurm] scancel --signal=KILL: reported as {status.detail!r}; its tasks ran again elsewhere")


@pytest.mark.timeout(90)
def test_jobs_that_never_start_are_reported_failed_cancelled_and_the_manager_goes_on(empty_queue, tmp_path):
    slurm = empty_queue
    # Refused at submission: a constraint no node has.
    refused = adapter_for("tcp://127.0.0.1:1", tmp_path, name="nope", extra_sbatch=("--constraint=nope",))
    refused.start("nope.a")
    status = refused.poll()["nope.a"]
    assert status.state == ManagedWorkerState.FAILED and "sbatch refused the job" in status.detail
    assert "feature" in status.detail.lower()

    # Accepted but never startable: a time over the partition's limit leaves it pending for good.
    scheduler = FakeScheduler()
    adapter = adapter_for(scheduler.address, tmp_path, name="late", time="2:00:00")
    manager = WorkerManager(scheduler.address, adapter, "late", 0, 2, poll_interval_seconds=0.3)
    thread = threading.Thread(target=manager.run, daemon=True)
    thread.start()
    try:
        scheduler.heartbeat()
        scheduler.send(WorkerManagerCommand(target=1, stop_workers=[]))
        beat = scheduler.heartbeat(
            until=lambda beat: any(r.state == ManagedWorkerState.FAILED for r in beat.workers), timeout=30
        )
        failed = [r for r in beat.workers if r.state == ManagedWorkerState.FAILED]
        assert len(failed) == 1 and "PartitionTimeLimit" in failed[0].detail, failed
        first_job = failed[0].detail.split()[1]
        assert first_job not in slurm.jobs(), "the job that could not start was cancelled"
        # It goes on: still heartbeating, and after its back-off it asks Slurm again.
        scheduler.heartbeat(until=lambda beat: any(r.worker_name != failed[0].worker_name for r in beat.workers))
        assert thread.is_alive()
    finally:
        manager.stop()
        thread.join(15)
        scheduler.close()
    print(f"\n[slurm] never-starting jobs: sbatch refusal -> {status.detail!r}; pending -> {failed[0].detail!r}")


@pytest.mark.timeout(120)
def test_a_restarted_manager_finds_its_jobs_in_squeue(empty_queue, tmp_path):
    log = tmp_path / "scheduler.log"
    with scheduler_process(log) as address:
        first = adapter_for(address, tmp_path, name="re")
        other = adapter_for(address, tmp_path, name="re-other")  # a prefix of another manager: not adopted
        first.start("re.a")
        first.start("re.b")
        other.start("re-other.a")
        wait_states(first, {"re.a": ManagedWorkerState.RUNNING, "re.b": ManagedWorkerState.RUNNING})
        first.close()
        again = adapter_for(address, tmp_path, name="re")
        assert again.adopt() == ["re.a", "re.b"]
        assert again.job_id("re.a") == first.job_id("re.a")
        with Client(address=address, timeout_seconds=60) as client:
            wait_for_names(client, {"re.a", "re.b"})
        again.stop("re.a")
        again.stop("re.b")
        other.stop("re-other.a")
        idle_gone_after = wait_states(again, {}, timeout=60)
        wait_states(other, {}, timeout=60)
    print(
        f"\n[slurm] 2 idle worker jobs: scancel --batch --signal=TERM -> both gone from squeue "
        f"{idle_gone_after:.2f} s later"
    )


@pytest.mark.timeout(120)
def test_the_command_runs_its_minimum_as_jobs_and_leaves_them_running_when_it_stops(empty_queue, tmp_path):
    slurm = empty_queue
    log = tmp_path / "scheduler.log"
    with scheduler_process(log) as address:
        argv = [
            sys.executable, "-m", "scaler.cli.worker_manager", "slurm", address, "--name=cli", "--min-workers=2",
            "--max-workers=2", "--poll-interval-seconds=0.5", f"--slurm-output={tmp_path}/%x-%j.out",
            "--slurm-cpus-per-task=1", "--slurm-time=10:00", "--slurm-sbatch=--comment=scaler-test",
        ]  # fmt: skip
        asked_wall = time.time()
        with open(tmp_path / "manager.log", "ab") as out:
            manager = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env_with_worktree())
        try:
            deadline = time.monotonic() + 30
            while len(names := [line.split("|")[1] for line in jobs_of(slurm, "cli.")]) < 2:
                assert time.monotonic() < deadline, (tmp_path / "manager.log").read_text()
                time.sleep(0.1)
            connected = max(connected_times(log, set(names)).values()) - asked_wall
            with Client(address=address, timeout_seconds=60) as client:
                wait_for_names(client, set(names))
            manager.send_signal(signal.SIGTERM)
            assert manager.wait(timeout=15) == 0
            assert sorted(line.split("|")[1] for line in jobs_of(slurm, "cli.")) == sorted(names)
        finally:
            if manager.poll() is None:
                manager.kill()
                manager.wait()
    print(f"\n[slurm, scaler_worker_manager] --min-workers 2: both worker jobs connected {connected:.2f} s after start")


def jobs_of(slurm: SlurmBed, prefix: str) -> list[str]:
    lines = slurm.run("squeue", "--noheader", "--format=%i|%j|%T").splitlines()
    return [line for line in lines if line.split("|")[1].startswith(prefix)]


@pytest.mark.timeout(150)
def test_the_manager_grows_from_zero_to_n_jobs_drains_a_named_busy_one_and_shrinks_to_zero(empty_queue, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    log = tmp_path / "scheduler.log"
    with scheduler_process(log) as address:
        figures = scale_cycle(adapter_for(address, tmp_path, name="cyc"), "cyc", address, log, marks, 3)
    print(
        f"\n[slurm, manager] target 0 -> 3 jobs: all connected {figures.connected:.2f} s after the command; a busy "
        f"worker stopped -> its job gone {figures.busy_stop:.2f} s later (its 1 s task finished first); the 2 idle "
        f"ones -> {figures.idle_stop:.2f} s"
    )
