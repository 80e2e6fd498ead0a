"""Many clients in one process share nothing that can mix their frames (issue 9, defect 1).

Fifty ``Client``s, one per thread, each submit 1,000 tasks at once. Their agent threads encode
frames concurrently; before the codec kept one packer per thread, a shared packer interleaved
them, the scheduler dropped the bad frames, and thousands of futures never finished.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading

import pytest

from scaler import Client, SchedulerClusterCombo
from tests.integration import tasks

CLIENTS = 50
TASKS_PER_CLIENT = 1_000


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_fifty_clients_in_one_process_all_finish_with_the_right_results(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with SchedulerClusterCombo(n_workers=2, logging_level="WARNING") as cluster:
        address = cluster.get_address()
        start = threading.Barrier(CLIENTS)
        outcomes: dict[int, list[int] | BaseException] = {}

        def run(number: int) -> None:
            try:
                with Client(address=address, timeout_seconds=120) as client:
                    start.wait(60)  # every agent thread encodes at the same time
                    futures = [client.submit(tasks.add, number, index) for index in range(TASKS_PER_CLIENT)]
                    done, not_done = concurrent.futures.wait(futures, timeout=400)
                    if not_done:
                        raise AssertionError(f"client {number}: {len(not_done)} futures never finished")
                    outcomes[number] = [future.result() for future in futures]
            except BaseException as error:
                outcomes[number] = error

        threads = [threading.Thread(target=run, args=(number,)) for number in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(500)
    failures = {number: outcome for number, outcome in outcomes.items() if isinstance(outcome, BaseException)}
    assert failures == {}
    assert len(outcomes) == CLIENTS
    for number, results in outcomes.items():
        assert results == [number + index for index in range(TASKS_PER_CLIENT)]
    assert "bad frame" not in caplog.text
