"""Elastic scaling end to end on a real single-node Slurm: the real scheduler's policy, the real
``scaler_worker_manager slurm`` process, one batch job per worker (see ``tests/managers/elastic.py``)."""

from __future__ import annotations

import time

import pytest

from scaler import Client
from tests.managers.elastic import IDLE_SECONDS, elastic_cycle, manager_argv, running_manager
from tests.managers.support import scheduler_process

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
    deadline = time.monotonic() + 30
    while slurm.jobs():  # the drained workers' jobs end as their processes exit
        assert time.monotonic() < deadline, f"worker jobs left: {slurm.jobs()}"
        time.sleep(0.2)
