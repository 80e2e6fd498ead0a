"""Output streaming: while a task with ``stream_output`` runs, what it prints goes to its client.

``redirect_output(task_id, budget)`` swaps ``sys.stdout`` and ``sys.stderr`` for writers that
feed one ``OutputCoalescer``. A write only appends to a buffer (or, over the processor's byte
budget, only counts its bytes), so printing costs the task next to nothing and never waits on
the agent. A flusher thread, started at the task's first write, sends what is buffered as one
``TaskLog`` per stream at most every ``flush_seconds``, or sooner when ``flush_bytes`` wait; the
rest leaves when the task ends, before its result. What was dropped rides the stream's next
``TaskLog`` as ``dropped_bytes``, so the client can say where output is missing and how much.
Only Python-level writes are caught: a C extension or a child process writing to file
descriptor 1 or 2 directly still writes to the worker's own output.
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
import time
from collections.abc import Callable, Iterator

from scaler.io.output_limits import DEFAULT_OUTPUT_LIMITS, OutputLimits, TokenBucket, clip_text, text_bytes
from scaler.protocol.messages import LogStream, TaskLog
from scaler.worker import processor_context


class OutputCoalescer:
    """One task's output between flushes: buffered within a byte budget, the rest counted. Pure.

    Per stream, ``_lead`` counts bytes dropped just before the buffered text. A drop after some
    buffered text seals that text into a ready message first, so each gap keeps its place.
    """

    def __init__(self, task_id: bytes, budget: TokenBucket, limits: OutputLimits = DEFAULT_OUTPUT_LIMITS) -> None:
        self.task_id = task_id
        self._budget = budget
        self._flush_bytes = max(1, limits.flush_bytes)
        self._max_buffered = limits.max_buffered_bytes
        self._buffers: dict[LogStream, list[str]] = {LogStream.STDOUT: [], LogStream.STDERR: []}
        self._lead: dict[LogStream, int] = {LogStream.STDOUT: 0, LogStream.STDERR: 0}
        self._ready: list[TaskLog] = []
        self._buffered = 0  # bytes in buffers and ready messages
        self.dropped_bytes = 0

    def write(self, stream: LogStream, text: str, now: float) -> bool:
        """Buffer what the budget allows of ``text`` and count the rest; True when a flush is due now."""
        size = text_bytes(text)
        granted = self._budget.take(size, now) if self._buffered < self._max_buffered else 0
        if granted:
            self._buffers[stream].append(text if granted == size else clip_text(text, granted))
            self._buffered += granted
        if granted < size:
            self.dropped_bytes += size - granted
            self._seal(stream)
            self._lead[stream] += size - granted
        return self._buffered >= self._flush_bytes

    def take(self, final: bool = False) -> list[TaskLog]:
        """Everything ready to send; with ``final`` (the task ended), notices for drops not yet told too."""
        for stream in (LogStream.STDOUT, LogStream.STDERR):
            self._seal(stream)
            if final and self._lead[stream]:
                self._ready.append(TaskLog(self.task_id, stream, "", self._lead[stream]))
                self._lead[stream] = 0
        ready, self._ready = self._ready, []
        self._buffered = 0
        return ready

    def _seal(self, stream: LogStream) -> None:
        """Turn the stream's buffered text into ready messages of at most ``flush_bytes`` characters each."""
        buffer = self._buffers[stream]
        if not buffer:
            return
        text = "".join(buffer)
        buffer.clear()
        for start in range(0, len(text), self._flush_bytes):
            self._ready.append(
                TaskLog(self.task_id, stream, text[start : start + self._flush_bytes], self._lead[stream])
            )
            self._lead[stream] = 0


class StreamedOutput:
    """The thread-safe shell around one task's ``OutputCoalescer``: writers buffer, a flusher thread sends."""

    def __init__(
        self,
        coalescer: OutputCoalescer,
        limits: OutputLimits = DEFAULT_OUTPUT_LIMITS,
        send: Callable[[list[TaskLog]], None] = processor_context.send_all_to_agent,
    ) -> None:
        self._coalescer = coalescer
        self._flush_seconds = limits.flush_seconds
        self._send = send
        self._lock = threading.Lock()  # guards the coalescer: writes come from any of the task's threads
        self._wake = threading.Event()
        self._closed = False
        self._flusher: threading.Thread | None = None

    def write(self, stream: LogStream, text: str) -> None:
        """Buffer (or count) ``text``; never sends, never waits on the agent."""
        with self._lock:
            if self._closed:  # a thread the task left behind, writing after the task ended
                return
            due = self._coalescer.write(stream, text, time.monotonic())
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._run, name="output-flusher", daemon=True)
                self._flusher.start()
        if due:
            self._wake.set()

    def close(self) -> None:
        """The task ended: stop the flusher and send what is left (call before sending the result)."""
        with self._lock:
            self._closed = True
            flusher = self._flusher
        if flusher is not None:
            self._wake.set()
            flusher.join()
        with self._lock:
            messages = self._coalescer.take(final=True)
        self._deliver(messages)

    def _run(self) -> None:
        while True:
            self._wake.wait(self._flush_seconds)
            self._wake.clear()
            with self._lock:
                if self._closed:
                    return  # close() sends the rest, after this thread is gone, so nothing overtakes it
                messages = self._coalescer.take()
            if not self._deliver(messages):
                return

    def _deliver(self, messages: list[TaskLog]) -> bool:
        if not messages:
            return True
        try:
            self._send(messages)
        except OSError:  # the agent is gone: nobody to print for
            return False
        return True


class TaskOutput(io.TextIOBase):
    """A text stream (one of ``sys.stdout``/``sys.stderr`` in a task) that writes into a ``StreamedOutput``."""

    def __init__(self, sink: StreamedOutput, stream: LogStream) -> None:
        super().__init__()
        self._sink = sink
        self._stream = stream

    @property
    def encoding(self) -> str:  # type: ignore[override]
        """Always UTF-8: text travels as msgpack strings."""
        return "utf-8"

    def writable(self) -> bool:
        """Always True."""
        return True

    def isatty(self) -> bool:
        """Always False: no terminal at the other end."""
        return False

    def write(self, text: str) -> int:
        """Buffer ``text`` for the client (or count it if over the budget); return its length."""
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if text:
            self._sink.write(self._stream, text)
        return len(text)

    def flush(self) -> None:
        """Nothing to do: output leaves within ``flush_seconds`` anyway, and ``print(flush=True)`` in a
        loop must not turn into one message per line."""


@contextlib.contextmanager
def redirect_output(
    task_id: bytes, budget: TokenBucket | None = None, limits: OutputLimits = DEFAULT_OUTPUT_LIMITS
) -> Iterator[None]:
    """Send the task's stdout and stderr to its client while the block runs; send the rest at the end.

    ``budget`` is the processor's: it outlives the task, so a run of short tasks shares one limit.
    """
    if budget is None:
        budget = TokenBucket(limits.processor_bytes_per_second, limits.burst(limits.processor_bytes_per_second))
    sink = StreamedOutput(OutputCoalescer(task_id, budget, limits), limits)
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = TaskOutput(sink, LogStream.STDOUT), TaskOutput(sink, LogStream.STDERR)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        sink.close()
