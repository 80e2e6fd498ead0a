"""The pure pieces that bound streamed output: the byte budget, a hop's throttle, the processor's coalescer.

Time is an argument everywhere, so these tests move a fake clock by hand and never sleep.
"""

from __future__ import annotations

import threading

from scaler.io.output_limits import OutputLimits, OutputThrottle, TokenBucket, clip_text, text_bytes
from scaler.protocol.messages import LogStream, TaskLog
from scaler.worker.output import OutputCoalescer, StreamedOutput

OUT, ERR = LogStream.STDOUT, LogStream.STDERR

# -- TokenBucket ------------------------------------------------------------------------------------


def test_a_bucket_grants_its_burst_then_its_rate() -> None:
    bucket = TokenBucket(rate=100, burst=200)
    assert bucket.take(150, now=0.0) == 150
    assert bucket.take(50, now=0.0) == 50
    assert bucket.take(1, now=0.0) == 0  # empty: dry now
    assert bucket.take(10, now=0.5) == 0  # 50 saved: under half the bucket, still dry
    assert bucket.take(10, now=1.0) == 10  # 100 saved: half the bucket, flowing again
    assert bucket.take(500, now=1.0) == 90  # a short grant: the rest of what it holds


def test_a_bucket_never_holds_more_than_its_burst() -> None:
    bucket = TokenBucket(rate=100, burst=200)
    assert bucket.take(1000, now=1000.0) == 200


def test_a_clock_going_back_adds_nothing() -> None:
    bucket = TokenBucket(rate=100, burst=100)
    assert bucket.take(100, now=10.0) == 100
    assert bucket.take(1, now=5.0) == 0
    assert bucket.take(100, now=10.5) == 50  # 50 since 10.0, not 550 since 5.0
    assert bucket.take(100, now=10.0) == 0


def test_take_all_is_whole_or_nothing_and_an_oversized_request_passes_only_from_a_full_bucket() -> None:
    bucket = TokenBucket(rate=100, burst=100)
    assert bucket.take_all(60, now=0.0)
    assert not bucket.take_all(60, now=0.0)  # 40 left: refused whole, and dry
    assert not bucket.take_all(10, now=0.0)
    assert bucket.take_all(0, now=0.0)  # a notice without text always passes
    assert bucket.take_all(10, now=0.1)  # 50 saved: half the bucket
    assert not bucket.take_all(500, now=0.2)
    assert bucket.take_all(500, now=10.0)  # full: it passes, and is paid off later
    assert not bucket.take_all(1, now=13.0)  # 100 - 500 + 300 < 0 still
    assert bucket.take_all(1, now=14.5)


def test_a_rate_of_zero_means_no_limit() -> None:
    bucket = TokenBucket(rate=0, burst=0)
    assert bucket.take(10**9, now=0.0) == 10**9
    assert bucket.take_all(10**9, now=0.0)


def test_sizes_are_utf8_bytes_and_clips_never_split_a_character() -> None:
    assert text_bytes("abc") == 3
    assert text_bytes("héé") == 5
    assert clip_text("abcdef", 4) == "abcd"
    assert clip_text("ééé", 3) == "é"
    assert text_bytes(clip_text("ééé", 3)) <= 3


# -- OutputThrottle (one hop: worker or scheduler) ----------------------------------------------------


def log(task_id: bytes, text: str, stream: LogStream = OUT, dropped: int = 0) -> TaskLog:
    return TaskLog(task_id, stream, text, dropped)


def test_a_throttle_relays_within_its_budget_and_tells_each_gap_with_the_next_log() -> None:
    throttle = OutputThrottle(100)  # 100 bytes a second, a 100-byte bucket
    assert throttle.admit(log(b"t1", "a" * 70), 0.0) == log(b"t1", "a" * 70)
    assert throttle.admit(log(b"t1", "b" * 40), 0.0) is None
    assert throttle.admit(log(b"t2", "c" * 5), 0.0) is None  # dry: small ones wait too
    assert throttle.admit(log(b"t1", "e" * 5, ERR), 0.1) is None
    assert throttle.admit(log(b"t1", "d" * 10, dropped=3), 0.15) is None  # an earlier hop's drops add up
    assert throttle.held_task_ids() == {b"t1", b"t2"}
    # Refilled: t1's next stdout log carries its stdout gap; stderr's and t2's wait for their own.
    assert throttle.admit(log(b"t1", "f"), 1.0) == log(b"t1", "f", dropped=40 + 10 + 3)
    assert throttle.finish(b"t1") == [log(b"t1", "", ERR, dropped=5)]
    assert throttle.finish(b"t1") == []
    assert throttle.finish(b"t2") == [log(b"t2", "", OUT, dropped=5)]
    assert throttle.held_task_ids() == set()
    assert throttle.statistics() == {"output_passed_bytes": 71, "output_dropped_bytes": 60}


def test_a_notice_without_text_always_passes_and_collects_what_is_held() -> None:
    throttle = OutputThrottle(10)
    throttle.admit(log(b"t1", "x" * 10), 0.0)
    assert throttle.admit(log(b"t1", "y" * 10), 0.0) is None
    assert throttle.admit(log(b"t1", "", dropped=4), 0.0) == log(b"t1", "", dropped=14)


# -- OutputCoalescer (the processor) -------------------------------------------------------------------

LIMITS = OutputLimits(flush_bytes=10, max_buffered_bytes=1000)


def coalescer(rate: float = 1000, burst: float = 1000, limits: OutputLimits = LIMITS) -> OutputCoalescer:
    return OutputCoalescer(b"t1", TokenBucket(rate, burst), limits)


def test_writes_are_coalesced_into_one_message_per_stream() -> None:
    output = coalescer()
    for text in ("a", "b\n", "c"):
        assert not output.write(OUT, text, 0.0)
    output.write(ERR, "e\n", 0.0)
    assert output.take() == [log(b"t1", "ab\nc"), log(b"t1", "e\n", ERR)]
    assert output.take() == []
    assert output.take(final=True) == []


def test_a_full_buffer_asks_for_a_flush_and_messages_stay_under_the_flush_size() -> None:
    output = coalescer()
    assert not output.write(OUT, "123456789", 0.0)
    assert output.write(OUT, "abcdefghijklm", 0.0)  # 22 bytes waiting: over the 10-byte flush size
    assert [m.text for m in output.take()] == ["123456789a", "bcdefghijk", "lm"]


def test_output_over_the_budget_is_counted_and_each_gap_keeps_its_place() -> None:
    output = coalescer(rate=10, burst=20)
    output.write(OUT, "a" * 15, 0.0)
    output.write(OUT, "b" * 8, 0.0)  # 5 fit, 3 dropped: the buffer so far is sealed before the gap
    output.write(OUT, "c" * 4, 0.0)  # dry: all dropped
    output.write(ERR, "e" * 4, 0.5)  # dry (5 saved, under half): dropped, on stderr's count
    output.write(OUT, "d" * 4, 1.0)  # 10 saved: flowing again
    assert output.take() == [
        log(b"t1", "a" * 10),
        log(b"t1", "a" * 5 + "b" * 5),
        log(b"t1", "d" * 4, dropped=3 + 4),
    ]
    assert output.dropped_bytes == 11
    # stderr's gap has no text after it: it is told when the task ends.
    assert output.take(final=True) == [log(b"t1", "", ERR, dropped=4)]


def test_the_budget_outlives_a_task_but_each_task_has_its_own_counts() -> None:
    budget = TokenBucket(10, 10)
    first = OutputCoalescer(b"t1", budget, LIMITS)
    first.write(OUT, "x" * 12, 0.0)
    assert first.take(final=True) == [log(b"t1", "x" * 10), log(b"t1", "", dropped=2)]
    second = OutputCoalescer(b"t2", budget, LIMITS)
    second.write(OUT, "y", 0.0)
    assert second.take(final=True) == [log(b"t2", "", dropped=1)]


def test_an_agent_that_does_not_read_makes_the_processor_drop_not_hoard() -> None:
    output = coalescer(rate=10**9, burst=10**9, limits=OutputLimits(flush_bytes=10, max_buffered_bytes=30))
    for _ in range(10):
        output.write(OUT, "z" * 10, 0.0)
    assert sum(len(m.text) for m in output.take(final=True)) == 30
    assert output.dropped_bytes == 70


# -- StreamedOutput (the thread-safe shell) --------------------------------------------------------------


def test_writes_from_threads_all_arrive_in_order_per_thread_and_nothing_after_close() -> None:
    sent: list[TaskLog] = []
    limits = OutputLimits(flush_seconds=0.01, flush_bytes=100)
    output = StreamedOutput(coalescer(rate=0, limits=limits), limits, sent.extend)

    def write(name: str) -> None:
        for index in range(500):
            output.write(OUT, f"{name}{index};")

    threads = [threading.Thread(target=write, args=(name,)) for name in "abc"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    output.close()
    output.write(OUT, "after the end")
    text = "".join(m.text for m in sent)
    for name in "abc":
        mine = [part for part in text.split(";") if part.startswith(name)]
        assert mine == [f"{name}{index}" for index in range(500)]
    assert "after the end" not in text


def test_a_full_buffer_is_sent_before_the_task_ends() -> None:
    arrived = threading.Event()
    sent: list[TaskLog] = []

    def send(messages: list[TaskLog]) -> None:
        sent.extend(messages)
        arrived.set()

    output = StreamedOutput(coalescer(), OutputLimits(flush_seconds=60.0), send)
    output.write(OUT, "x" * 10)  # the flush size: the flusher is woken at once, not after 60 s
    assert arrived.wait(10)
    assert sent == [log(b"t1", "x" * 10)]
    output.close()
