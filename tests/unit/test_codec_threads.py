"""The codec is safe from many threads at once: frames never mix (issue 9, defect 1)."""

from __future__ import annotations

import sys
import threading

import pytest

from scaler.protocol.codec import decode, encode
from scaler.protocol.messages import ArgumentKind, Task, TaskArgument

THREADS = 4
FRAMES_PER_THREAD = 10_000


def _task(thread: int, index: int) -> Task:
    # Records (TaskArgument) go through the packer's Python ``default`` hook: where threads can switch.
    name = f"{thread}-{index}"
    args = [TaskArgument(name, ArgumentKind.INLINE, name.encode() * 3) for _ in range(3)]
    return Task(f"t{thread}:{index}".encode(), b"f" * 16, b"", args, thread)


@pytest.mark.timeout(120)
def test_encoding_from_many_threads_never_mixes_frames() -> None:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, to expose any shared buffer
    failures: list[str] = []
    start = threading.Barrier(THREADS)

    def encode_many(thread: int) -> None:
        start.wait()
        for index in range(FRAMES_PER_THREAD):
            message = _task(thread, index)
            try:
                decoded = decode(encode([message]))
            except Exception as error:
                failures.append(f"thread {thread} frame {index}: {error}")
                continue
            if decoded != [message]:
                failures.append(f"thread {thread} frame {index}: decoded another frame's content")

    try:
        threads = [threading.Thread(target=encode_many, args=(thread,)) for thread in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert failures == [], f"{len(failures)} bad frames, first: {failures[:3]}"
