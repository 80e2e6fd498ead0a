"""Elastic scaling end to end on a real single-node Slurm: the real scheduler's policy, the real
``scaler_worker_manager slurm`` process, one batch job per worker (see ``tests/managers/elastic.py``)."""

from __future__ import annotations

import signal
import time

import pytest

from scaler import Client
from tests.managers import manager_tasks
from tests.managers.elastic import (
    IDLE_SECONDS,
    Sampler,
    elastic_cycle,
    manager_argv,
    running_manager,
    start_manager,
    stop_manager,
)
from tests.managers.support import scheduler_process, started_marks
from tests.slurm.bed import SlurmBed

pytestmark = [pytest.mark.slow, pytest.mark.slurm]


@pytest.mark.timeout(300)
def test_worker_jobs_grow_to_the_maximum_under_a_burst_and_drain_back_to_none(empty_queue, tmp_path) -> None:
    slurm = empty_queue
    marks = tmp_path / "marks"
    marks.mkdir()
    log = tmp_path / "scheduler.log"
    flags = (f"--worker-idle-seconds={IDLE_SECONDS:g}",)
    with scheduler_process(log, *flags) as address:
        argv = manager_argv("slurm", address, "els", 0, 3, f"--slurm-output={tmp_path / '%x-%j.out'}")
        with (
            running_manager(argv, tmp_path / "manager.log"),
            Client(address=address, timeout_seconds=60, heartbeat_interval_seconds=0.5) as client,
        ):
            figures = elastic_cycle(client, marks, log, "els", 0, 3, tasks=12, seconds=1.0)
    print(
        f"\n[elastic slurm 0->3] scale-up {figures.scale_up:.2f}s, scale-down {figures.scale_down:.2f}s "
        f"(idle {IDLE_SECONDS:g}s), shortest life before a stop {figures.shortest_life:.2f}s"
    )
    wait_no_jobs(slurm)


def wait_no_jobs(slurm: SlurmBed, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while slurm.jobs():  # the drained workers' jobs end as their processes exit
        assert time.monotonic() < deadline, f"worker jobs left: {slurm.jobs()}"
        time.sleep(0.2)


@pytest.mark.timeout(300)
def test_a_killed_manager_leaves_its_jobs_serving_and_a_restarted_one_adopts_and_drains_them(
    empty_queue, tmp_path
) -> None:
    slurm = empty_queue
    marks = tmp_path / "marks"
    marks.mkdir()
    with scheduler_process(tmp_path / "scheduler.log", f"--worker-idle-seconds={IDLE_SECONDS:g}") as address:
        argv = manager_argv("slurm", address, "elk", 0, 2, f"--slurm-output={tmp_path / '%x-%j.out'}")
        with (
            Client(address=address, timeout_seconds=60, heartbeat_interval_seconds=0.5) as client,
            Sampler(client) as sampler,
        ):
            first = start_manager(argv, tmp_path / "manager.log")
            try:
                futures = [client.submit(manager_tasks.marked_sleep, str(marks), i, 1.0) for i in range(8)]
                sampler.wait_count(lambda n: n == 2, 120, "grow to 2 jobs")
                first.send_signal(signal.SIGKILL)
                first.wait()
            finally:
                stop_manager(first)
            assert [f.result(timeout=120)[0] for f in futures] == list(range(8))
            assert sampler.count() == 2 and len(slurm.jobs()) == 2, "the jobs outlive their manager"
            with running_manager(argv, tmp_path / "manager2.log"):
                sampler.wait_count(lambda n: n == 0, 60, "the adopted jobs drain to none")
                wait_no_jobs(slurm)
            assert sampler.retried == 0
    assert sorted(index for index, _ in started_marks(marks)) == list(range(8)), "each task started once"
    assert "adopted 2 workers" in (tmp_path / "manager2.log").read_text()
