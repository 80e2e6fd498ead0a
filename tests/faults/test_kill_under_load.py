"""Workers SIGKILLed while many short tasks run: nothing is lost, nothing is wrong, nothing runs twice."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from scaler import Client, Cluster, SchedulerClusterCombo
from scaler.io.sockets import free_tcp_address
from scaler.scheduler.server import SchedulerServer
from scaler.scheduler.state import SchedulerConfig
from tests.faults import fault_tasks
from tests.faults.support import LedgerTail, by_index, kill_when_mid_task, read_ledger, signal_all, tree, wait_gone
from tests.faults.support import wait_workers as wait_for_workers
from tests.integration.conftest import descendants, wait_no_descendants

FAULT_SETTINGS = {"heartbeat_interval_seconds": 0.5, "worker_timeout_seconds": 3, "logging_level": "WARNING"}


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_sigkill_one_of_four_workers_loses_nothing_and_runs_each_task_to_completion_once(tmp_path) -> None:
    n_tasks, seconds = 500, 0.05  # 125 done before the kill, 375 after it on the 3 workers left
    expected = [index * index for index in range(n_tasks)]
    before = descendants()
    touched: set[int] = set()
    combo = SchedulerClusterCombo(n_workers=4, **FAULT_SETTINGS)
    try:
        with Client(address=combo.get_address(), timeout_seconds=30, heartbeat_interval_seconds=0.5) as client:
            wait_for_workers(client, combo.worker_pids())

            clean = str(tmp_path / "clean.ledger")
            started = time.monotonic()
            futures = [client.submit(fault_tasks.ledger_sleep, clean, i, seconds) for i in range(n_tasks)]
            assert [future.result(timeout=60) for future in futures] == expected
            clean_seconds = time.monotonic() - started

            ledger = str(tmp_path / "faulted.ledger")
            victim = combo.worker_pids()[0]
            touched |= set(tree(victim))
            started = time.monotonic()
            futures = [client.submit(fault_tasks.ledger_sleep, ledger, i, seconds) for i in range(n_tasks)]
            while sum(future.done() for future in futures) < n_tasks // 4:
                time.sleep(0.01)
            # Killed 30+ ms before its running task ends: no finished result was still on its way.
            killed_at, cut_short = kill_when_mid_task(LedgerTail(ledger), victim, started_within=0.02)
            assert [future.result(timeout=90) for future in futures] == expected
            faulted_seconds = time.monotonic() - started
            assert client.statistics()["pending"] == 0
    finally:
        combo.shutdown()
    assert wait_gone(touched) == set()
    assert wait_no_descendants(before) == set()

    entries = read_ledger(ledger)
    starts, dones = by_index(entries, "start"), by_index(entries, "done")
    assert sorted(dones) == list(range(n_tasks)), "every task finished"
    twice = {index: [entry.pid for entry in runs] for index, runs in dones.items() if len(runs) != 1}
    assert twice == {}, f"tasks that ran to completion more than once: {twice}"
    unfinished = {index for index, runs in starts.items() if len(runs) > 1}
    assert cut_short in unfinished
    rerun = min(entry.time for entry in starts[cut_short][1:])
    ratio = faulted_seconds / clean_seconds
    print(
        f"\n[kill 1 of 4] {n_tasks} x {seconds * 1000:.0f} ms: fault-free {clean_seconds:.2f} s, "
        f"with a SIGKILLed worker {faulted_seconds:.2f} s, slowdown ratio {ratio:.2f}; lost futures 0; "
        f"attempts cut short {len(unfinished)}, tasks completed twice 0; "
        f"the task cut short ran again {rerun - killed_at:.2f} s after the kill"
    )
    assert ratio <= 2.0, ratio


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_rolling_chaos_a_worker_killed_every_two_seconds_or_so_loses_nothing() -> None:
    n_tasks, seconds, interval, min_kills = 2000, 0.01, 1.75, 5
    before = descendants()
    touched: set[int] = set()
    clusters: list[Cluster] = []
    # The scheduler runs on a thread here, so that it can validate its whole state after every loop turn.
    config = SchedulerConfig(worker_timeout_seconds=3, client_timeout_seconds=30)
    server = SchedulerServer(free_tcp_address(), config, check_invariants=True)
    serving = threading.Thread(target=server.run, name="scheduler", daemon=True)
    serving.start()
    invariants_at_kills: list[list[str]] = []

    def add_worker() -> list[int]:
        cluster = Cluster(server.address, 1, heartbeat_interval_seconds=0.5, logging_level="WARNING")
        cluster.start()
        clusters.append(cluster)
        return cluster.pids()

    try:
        live = add_worker() + add_worker()  # agents, oldest first
        with Client(address=server.address, timeout_seconds=30, heartbeat_interval_seconds=0.5) as client:
            wait_for_workers(client, live)
            # The victim is always the newest worker: it has just taken the tasks the last victim held.
            started = time.monotonic()
            futures = [client.submit(fault_tasks.sleep_square, i, seconds) for i in range(n_tasks)]
            kills = 0
            next_kill = started + interval
            while not all(future.done() for future in futures):
                assert time.monotonic() - started < 100, "the run does not finish"
                if time.monotonic() >= next_kill:
                    victim = live.pop()
                    pids = tree(victim)
                    touched |= set(pids)
                    if kills % 2:
                        os.kill(victim, signal.SIGKILL)  # the agent only: its processors must follow it
                    else:
                        signal_all(pids, signal.SIGKILL)  # the whole worker, as when its machine is lost
                    kills += 1
                    time.sleep(0.2)  # the scheduler sees the connection close and requeues
                    invariants_at_kills.append(list(server.invariant_failures))
                    live += add_worker()
                    next_kill += interval
                time.sleep(0.05)
            elapsed = time.monotonic() - started
            errors = {i: future.exception(timeout=0) for i, future in enumerate(futures)}
            lost = {i: error for i, error in errors.items() if error is not None}
            wrong = sum(futures[i].result(timeout=0) != i * i for i, error in errors.items() if error is None)
            assert client.statistics()["pending"] == 0
    finally:
        for cluster in clusters:
            cluster.shutdown(grace_seconds=5)
        server.stop()
        serving.join(timeout=10)
    print(
        f"\n[rolling chaos] {n_tasks} x {seconds * 1000:.0f} ms with a worker killed every {interval:g} s: "
        f"{kills} kills, {len(clusters)} workers started, done in {elapsed:.2f} s; "
        f"lost futures {len(lost)}, wrong results {wrong}; the scheduler validated its state after each of "
        f"{server.validations} loop turns, {len(server.invariant_failures)} failures"
    )
    if lost:
        print(f"  for example: {next(iter(lost.values()))!r}")
    assert not serving.is_alive()
    assert wait_gone(touched) == set()
    assert wait_no_descendants(before) == set()
    assert kills >= min_kills, f"only {kills} kills happened before the run ended; lengthen the run"
    assert server.validations > 100, "the scheduler did not check its invariants"
    assert invariants_at_kills == [[]] * kills, "an invariant broke around a kill"
    assert server.invariant_failures == []
    assert lost == {}
    assert wrong == 0
