"""Start-up: a worker joins the scheduler's pool only once it can run a task."""

from __future__ import annotations

import pytest

from scaler.protocol.messages import WorkerHeartbeat
from tests.integration.conftest import descendants, wait_no_descendants


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
