"""A host cut off from the network (its bridge port down) while it works: a worker's host, then a client's.

A cut closes no connection: nothing reaches the other side, so the scheduler notices only by silence
(``--worker-timeout-seconds``, ``--client-timeout-seconds``, 3 s here) and the client by its own
``timeout_seconds``. When the link comes back, the worker's next heartbeat registers it again. There is
no worker manager yet, so the other way back (a manager replacing the lost worker) is not tested here.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tests.multihost.support import Deployment, figure

pytestmark = [pytest.mark.multihost, pytest.mark.slow]


def read_ledger(path: Path) -> list[tuple[int, float, str]]:
    """``(task index, start time, host)`` for each start the tasks wrote."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        index, started, host = line.split()
        rows.append((int(index), float(started), host))
    return rows


def number_in(pattern: str, line: str) -> int:
    """The number that ``pattern``'s group captures in a log line."""
    match = re.search(pattern, line)
    assert match is not None, line
    return int(match.group(1))


@pytest.mark.timeout(180)
def test_a_worker_host_cut_off_loses_no_task_and_the_worker_rejoins(deployment: Deployment, tmp_path: Path) -> None:
    n_tasks, seconds = 150, 0.05
    ledger = tmp_path / "ledger"
    deployment.start_scheduler()
    deployment.start_workers()
    deployment.wait_workers(2)

    remote = deployment.client("cli", "batch", n_tasks=n_tasks, task_seconds=seconds, signal_after=20,
                               ledger=str(ledger))  # fmt: skip
    remote.wait("running", timeout=60)
    cut_at = time.time()
    deployment.testbed.unplug("w1")
    [(noticed_at, line)] = deployment.scheduler_log.wait_for(r"worker \S*\|w1\|\S* timed out holding", since=cut_at)
    held = number_in(r"holding (\d+) tasks", line)
    results = remote.wait("done", timeout=120)["results"]
    assert remote.close() == 0

    # Every future ended, once, with the right result, though w1 held tasks when it vanished.
    assert sorted(r["i"] for r in results) == list(range(n_tasks))
    assert [r for r in results if not r["ok"]] == []
    assert held > 0
    # Nothing came back from w1 while it was cut off (a second of slack for results already on the wire).
    assert {r["host"] for r in results if r["time"] > cut_at + 1.0} <= {"w2"}
    # The tasks w1 was running or held ran again on w2: those the ledger shows starting on both hosts.
    hosts_of: dict[int, set[str]] = defaultdict(set)
    for index, _, host in read_ledger(ledger):
        hosts_of[index].add(host)
    stranded = {index for index, hosts in hosts_of.items() if hosts == {"w1", "w2"}}
    assert stranded, "no task of the cut-off worker ran again elsewhere"
    finished = {r["i"]: r for r in results}
    assert all(finished[index]["host"] == "w2" for index in stranded)
    recovered_at = max(finished[index]["time"] for index in stranded)

    plug_at = time.time()
    deployment.testbed.plug("w1")
    [(rejoined_at, _)] = deployment.scheduler_log.wait_for(r"worker \S*\|w1\|\S* connected", since=plug_at, timeout=60)
    second = deployment.client("cli", "batch", n_tasks=40, task_seconds=seconds)
    later = second.wait("done", timeout=60)["results"]
    assert second.close() == 0
    assert sorted(r["i"] for r in later) == list(range(40))
    assert all(r["ok"] for r in later)
    assert {r["host"] for r in later} == {"w1", "w2"}, "the rejoined worker ran none of the later tasks"

    figure(
        "multihost worker host cut",
        f"worker_timeout_seconds={deployment.timeouts.worker_timeout_seconds:g}, heartbeats every "
        f"{deployment.timeouts.heartbeat_interval_seconds:g} s: the scheduler dropped w1 (holding {held} tasks) "
        f"{noticed_at - cut_at:.2f} s after the cut; the last of its {len(stranded)} stranded tasks finished on w2 "
        f"{recovered_at - cut_at:.2f} s after the cut; {n_tasks} of {n_tasks} right, 0 lost. Link back up: w1 "
        f"registered again {rejoined_at - plug_at:.2f} s later and ran "
        f"{sum(r['host'] == 'w1' for r in later)} of the next 40 tasks",
    )


@pytest.mark.timeout(180)
def test_a_client_host_cut_off_fails_its_futures_and_frees_the_workers(deployment: Deployment, tmp_path: Path) -> None:
    n_tasks, seconds = 100, 0.5
    ledger = tmp_path / "ledger"
    client_timeout = 3.0
    deployment.start_scheduler()
    deployment.start_workers()
    deployment.wait_workers(2)

    doomed = deployment.client("cli", "doomed", n_tasks=n_tasks, task_seconds=seconds, ledger=str(ledger),
                               timeout_seconds=client_timeout)  # fmt: skip
    doomed.wait("submitted", timeout=60)
    cut_at = time.time()
    deployment.testbed.unplug("cli")
    # Another client, on another host, submits now: its tasks queue behind the cut-off client's.
    other = deployment.client("cli2", "batch", n_tasks=20, task_seconds=0.01)

    [(dropped_at, line)] = deployment.scheduler_log.wait_for(r"client \S+ timed out; cancelling its \d+ tasks",
                                                             since=cut_at)  # fmt: skip
    cancelled = number_in(r"cancelling its (\d+) tasks", line)
    outcome = doomed.wait("done", timeout=60)
    left = doomed.wait("left", timeout=30)
    doomed.close()
    served = other.wait("done", timeout=60)["results"]
    assert other.close() == 0
    started_by_then = len(read_ledger(ledger))
    time.sleep(1.0)

    # The cut-off client: every pending future failed with DisconnectedError, within its timeout.
    assert outcome["pending"] == 0
    assert outcome["other_errors"] == []
    assert outcome["disconnected"] == n_tasks - outcome["succeeded"] > 0
    failed_after = outcome["last_failure"] - cut_at
    assert failed_after <= client_timeout + 2.0, failed_after
    # The scheduler dropped it and cancelled its work: the other client was served long before the cut-off
    # client's queue would have drained, and none of its tasks started after that.
    assert cancelled > 0
    served_after = max(r["time"] for r in served) - cut_at
    alone = n_tasks * seconds / len(deployment.worker_hosts)
    assert all(r["ok"] for r in served) and len(served) == 20
    assert served_after < client_timeout + 5.0 < alone, served_after
    assert len(read_ledger(ledger)) == started_by_then, "tasks of the cut-off client still start"
    assert all(started <= dropped_at + 0.5 for _, started, _ in read_ledger(ledger))

    figure(
        "multihost client host cut",
        f"client timeout_seconds={client_timeout:g}, scheduler client_timeout_seconds="
        f"{deployment.timeouts.client_timeout_seconds:g}: the client's {outcome['disconnected']} pending futures "
        f"failed with DisconnectedError {outcome['first_failure'] - cut_at:.2f}-{failed_after:.2f} s after the "
        f"cut (it left cleanly: {left['clean']}); the scheduler dropped it {dropped_at - cut_at:.2f} s after the cut, "
        f"cancelling {cancelled} tasks; another client's 20 tasks finished {served_after:.2f} s after the cut "
        f"(the cut-off client's queue alone would take {alone:.0f} s); {started_by_then} of its tasks had started, "
        f"none after",
    )
