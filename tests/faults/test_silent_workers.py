"""Workers that go silent without closing their connection: frozen (SIGSTOP) or cut off by the network.

The scheduler can only notice through silence, after worker_timeout_seconds. Then the tasks the
worker held run elsewhere; when the worker comes back, its late results are ignored and each
future still resolves exactly once, with the right value.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Callable

import pytest

from scaler import Client, Cluster, SchedulerClusterCombo
from tests.faults import fault_tasks
from tests.faults.support import SilentProxy, read_ledger, signal_all, tree, wait_gone
from tests.faults.support import wait_workers as wait_for_workers
from tests.integration.conftest import descendants, wait_no_descendants

WORKER_TIMEOUT = 3.0
FAULT_SETTINGS = {
    "heartbeat_interval_seconds": 0.5,
    "worker_timeout_seconds": WORKER_TIMEOUT,
    "logging_level": "WARNING",
}


def _silence_and_return(
    client: Client, ledger: str, victim: int, silence: Callable[[], None], restore: Callable[[], None], label: str
) -> None:
    """Run 20 x 0.1 s tasks on two workers, silence ``victim`` early, restore it once its tasks run
    elsewhere; check the outcome and print the detection time."""
    n_tasks, seconds = 20, 0.1
    victim_pids = set(tree(victim))
    futures = [client.submit(fault_tasks.ledger_sleep, ledger, i, seconds) for i in range(n_tasks)]
    resolutions: Counter[int] = Counter()
    for index, future in enumerate(futures):
        future.add_done_callback(lambda _, index=index: resolutions.update([index]))
    time.sleep(0.25)
    silence()
    silenced_at = time.time()
    time.sleep(WORKER_TIMEOUT - 1.0)  # the other worker has long finished its own share
    held = {index for index, future in enumerate(futures) if not future.done()}
    assert held, "the silent worker held no task"
    moved_at = None
    deadline = time.monotonic() + 15
    while moved_at is None:
        assert time.monotonic() < deadline, "the silent worker's tasks never ran elsewhere"
        reruns = [e.time for e in read_ledger(ledger) if e.index in held and e.pid not in victim_pids]
        moved_at = min(reruns) if reruns else None
        time.sleep(0.02)
    restore()
    restored_at = time.time()
    results = [future.result(timeout=15) for future in futures]
    # Let the restored worker finish what it still runs from its stale queue, and report it.
    quiet_since, seen = time.monotonic(), -1
    while time.monotonic() - quiet_since < 1.0:
        entries = read_ledger(ledger)
        if len(entries) != seen:
            quiet_since, seen = time.monotonic(), len(entries)
        time.sleep(0.1)
    # Tasks both the silenced worker (late) and another worker ran to the end: one result was ignored.
    late = {e.index for e in entries if e.pid in victim_pids and e.kind == "done" and e.time > silenced_at}
    elsewhere = {e.index for e in entries if e.pid not in victim_pids and e.kind == "done"}
    ignored = late & elsewhere
    assert client.submit(fault_tasks.sleep_square, 7, 0).result(timeout=10) == 49  # the client is fine
    assert client.statistics()["pending"] == 0
    detection = moved_at - silenced_at
    print(
        f"\n[{label}] worker_timeout_seconds={WORKER_TIMEOUT:g}: the {len(held)} tasks it held started elsewhere "
        f"{detection:.2f} s after it went silent; it came back {restored_at - silenced_at:.2f} s after, and "
        f"{len(ignored)} of its late results were ignored (those tasks also ran elsewhere); "
        f"every future resolved once, lost futures 0"
    )
    assert results == [index * index for index in range(n_tasks)]
    assert resolutions == Counter(range(n_tasks)), "each future resolves once"
    assert all(future.result(timeout=0) == index * index for index, future in enumerate(futures))
    assert WORKER_TIMEOUT - 0.5 <= detection <= WORKER_TIMEOUT + 2.5, detection
    assert ignored, "the worker that came back finished none of its stale tasks: nothing late was tested"


@pytest.mark.timeout(60)
def test_a_sigstopped_worker_s_tasks_rerun_after_the_timeout_and_its_late_results_are_ignored(tmp_path) -> None:
    before = descendants()
    combo = SchedulerClusterCombo(n_workers=2, **FAULT_SETTINGS)
    victim_pids: list[int] = []
    try:
        with Client(address=combo.get_address(), timeout_seconds=30, heartbeat_interval_seconds=0.5) as client:
            wait_for_workers(client, combo.worker_pids())
            victim = combo.worker_pids()[0]
            victim_pids = tree(victim)

            def freeze() -> None:
                signal_all(victim_pids, signal.SIGSTOP)

            def thaw() -> None:
                signal_all(victim_pids, signal.SIGCONT)

            _silence_and_return(client, str(tmp_path / "ledger"), victim, freeze, thaw, "SIGSTOP")
    finally:
        signal_all(victim_pids, signal.SIGCONT)  # a stopped process cannot act on SIGTERM
        combo.shutdown()
    assert wait_gone(victim_pids) == set()
    assert wait_no_descendants(before) == set()


@pytest.mark.timeout(60)
def test_a_worker_cut_off_without_a_close_is_treated_like_a_frozen_one(tmp_path) -> None:
    before = descendants()
    combo = SchedulerClusterCombo(n_workers=1, **FAULT_SETTINGS)
    proxy = SilentProxy(combo.get_address())
    far = Cluster(proxy.address, 1, heartbeat_interval_seconds=0.5, logging_level="WARNING")
    touched: list[int] = []
    try:
        far.start()
        with Client(address=combo.get_address(), timeout_seconds=30, heartbeat_interval_seconds=0.5) as client:
            wait_for_workers(client, combo.worker_pids() + far.pids())
            victim = far.pids()[0]
            touched = tree(victim)
            _silence_and_return(client, str(tmp_path / "ledger"), victim, proxy.cut, proxy.heal, "network cut")
    finally:
        far.shutdown()
        combo.shutdown()
        proxy.close()
    assert wait_gone(touched) == set()
    assert wait_no_descendants(before) == set()
