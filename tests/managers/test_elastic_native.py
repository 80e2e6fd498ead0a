"""Elastic scaling end to end, natively: the real scheduler's policy, the real ``scaler_worker_manager`` process.

Nothing plays a part here: the scheduler decides from its queue, the manager starts and stops local
worker processes, and the client sees only its results. See ``elastic.py`` for what one cycle checks.
"""

from __future__ import annotations

import signal
import time

import pytest

from scaler import Client, NoWorkerError
from tests.managers import manager_tasks
from tests.managers.elastic import (
    IDLE_SECONDS,
    Sampler,
    elastic_cycle,
    kill_native_workers,
    manager_argv,
    running_manager,
    start_manager,
    stop_manager,
)
from tests.managers.support import scheduler_process, started_marks

pytestmark = pytest.mark.slow

SCHEDULER_FLAGS = (f"--worker-idle-seconds={IDLE_SECONDS:g}", "--unschedulable-grace-seconds=2")


def client_for(address: str) -> Client:
    return Client(address=address, timeout_seconds=60, heartbeat_interval_seconds=0.5)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("low", [0, 1])
def test_workers_grow_to_the_maximum_under_a_burst_and_drain_back_to_the_minimum(tmp_path, low) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    log = tmp_path / "scheduler.log"
    name = f"el{low}"
    argv = manager_argv("native", "", name, low, 3, f"--native-state-dir={tmp_path / 'state'}")
    try:
        with scheduler_process(log, *SCHEDULER_FLAGS) as address:
            argv[4] = address
            with running_manager(argv, tmp_path / "manager.log"), client_for(address) as client:
                figures = elastic_cycle(client, marks, log, name, low, 3, tasks=12, seconds=1.0)
                print(
                    f"\n[elastic native {low}->3] scale-up {figures.scale_up:.2f}s, "
                    f"scale-down {figures.scale_down:.2f}s (idle {IDLE_SECONDS:g}s), "
                    f"shortest life before a stop {figures.shortest_life:.2f}s"
                )
    finally:
        kill_native_workers(name)


@pytest.mark.timeout(120)
def test_a_task_no_manager_can_serve_still_gets_the_no_worker_error(tmp_path) -> None:
    name = "elcap"
    argv = manager_argv("native", "", name, 0, 2, f"--native-state-dir={tmp_path / 'state'}")
    try:
        with scheduler_process(tmp_path / "scheduler.log", *SCHEDULER_FLAGS) as address:
            argv[4] = address
            with running_manager(argv, tmp_path / "manager.log"), client_for(address) as client:
                time.sleep(1)  # the manager has announced itself
                future = client.submit_verbose(manager_tasks.worker_name, (0,), {}, capabilities={"gpu": 1})
                with pytest.raises(NoWorkerError, match="gpu=1"):
                    future.result(timeout=30)
                # and a plain task still gets a worker started for it
                assert client.submit(manager_tasks.worker_name, 0).result(timeout=60).startswith(name + ".")
    finally:
        kill_native_workers(name)


@pytest.mark.timeout(240)
def test_a_killed_manager_leaves_its_workers_serving_and_a_restarted_one_adopts_them_and_keeps_scaling(
    tmp_path,
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    log = tmp_path / "scheduler.log"
    name = "elkill"
    argv = manager_argv("native", "", name, 1, 3, f"--native-state-dir={tmp_path / 'state'}")
    try:
        with scheduler_process(log, *SCHEDULER_FLAGS) as address:
            argv[4] = address
            with client_for(address) as client, Sampler(client) as sampler:
                first = start_manager(argv, tmp_path / "manager.log")
                try:
                    futures = [client.submit(manager_tasks.marked_sleep, str(marks), i, 1.0) for i in range(12)]
                    sampler.wait_count(lambda n: n == 3, 120, "grow to 3")
                    first.send_signal(signal.SIGKILL)
                    first.wait()
                finally:
                    stop_manager(first)
                results = [future.result(timeout=120) for future in futures]
                assert [index for index, _ in results] == list(range(12))
                assert sampler.count() == 3, "the workers kept serving without their manager"
                time.sleep(IDLE_SECONDS + 1)
                assert sampler.count() == 3, "nobody stops them while no manager runs"
                with running_manager(argv, tmp_path / "manager2.log"):
                    sampler.wait_count(lambda n: n == 1, 60, "the adopted workers drain to the minimum")
                    futures = [client.submit(manager_tasks.marked_sleep, str(marks), 100 + i, 1.0) for i in range(9)]
                    sampler.wait_count(lambda n: n == 3, 120, "grow again to 3")
                    assert [f.result(timeout=120)[0] for f in futures] == [100 + i for i in range(9)]
                    sampler.wait_count(lambda n: n == 1, 60, "drain again to the minimum")
                assert sampler.most_active <= 3
                assert sampler.retried == 0
        starts = sorted(index for index, _ in started_marks(marks))
        assert starts == list(range(12)) + [100 + i for i in range(9)], "each task started exactly once"
        adopted = (tmp_path / "manager2.log").read_text()
        assert "adopted 3 workers" in adopted
    finally:
        kill_native_workers(name)
