"""``RateLimitedLog`` takes the time from its caller, so a flood's window is tested without sleeping."""

from __future__ import annotations

import logging

import pytest

from scaler.utility.rate_limited_log import RateLimitedLog


def test_a_burst_per_window_then_a_count_of_what_was_held_back(caplog: pytest.LogCaptureFixture) -> None:
    log = RateLimitedLog(interval=1.0, logger=logging.getLogger("flood"), burst=2)
    with caplog.at_level(logging.INFO, logger="flood"):
        for step in range(5):
            log.warning(10.0 + step * 0.1, "bad frame %d", step)
        log.info(11.0, "bad frame %d", 5)  # a new window
        log.error(11.5, "bad frame %d", 6)
        log.error(11.6, "bad frame %d", 7)  # over the burst again: held back
    assert [record.getMessage() for record in caplog.records] == [
        "bad frame 0",
        "bad frame 1",
        "bad frame 5 (3 similar messages suppressed)",
        "bad frame 6",
    ]
    assert [record.levelno for record in caplog.records] == [logging.WARNING] * 2 + [logging.INFO, logging.ERROR]
