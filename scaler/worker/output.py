"""Output streaming: while a task with ``stream_output`` runs, what it prints goes to its client.

``redirect_output(task_id)`` swaps ``sys.stdout`` and ``sys.stderr`` for writers that send each
complete line (or run of lines) as a ``TaskLog`` to the agent, and whatever is left when the task
ends. Writes from the task's threads are serialized by a lock per stream. Only Python-level
writes are caught: a C extension or a child process writing to file descriptor 1 or 2 directly
still writes to the worker's own output.
"""

from __future__ import annotations

import contextlib
import io
import sys
import threading
from collections.abc import Iterator

from scaler.protocol.messages import LogStream, TaskLog
from scaler.worker import processor_context

# A line longer than this (or output with no newline for this long) is sent in pieces.
_MAX_CHUNK_CHARACTERS = 64 * 1024


class TaskOutput(io.TextIOBase):
    """A text stream that sends what is written to it as ``TaskLog`` messages of one task."""

    def __init__(self, task_id: bytes, stream: LogStream) -> None:
        super().__init__()
        self._task_id = task_id
        self._stream = stream
        self._pending: list[str] = []
        self._pending_size = 0
        self._lock = threading.Lock()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        """Always UTF-8: the text travels as UTF-8 in ``TaskLog`` messages."""
        return "utf-8"

    def writable(self) -> bool:
        """Always ``True``."""
        return True

    def isatty(self) -> bool:
        """Always ``False``: the output goes to the client, not a terminal."""
        return False

    def write(self, text: str) -> int:
        """Buffer ``text``; send the complete lines, or everything once 64 Ki characters wait; return its length."""
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if not text:
            return 0
        with self._lock:
            self._pending.append(text)
            self._pending_size += len(text)
            if "\n" in text or self._pending_size >= _MAX_CHUNK_CHARACTERS:
                joined = "".join(self._pending)
                cut = joined.rfind("\n") + 1 if self._pending_size < _MAX_CHUNK_CHARACTERS else len(joined)
                rest = joined[cut:]
                self._pending = [rest] if rest else []
                self._pending_size = len(rest)
                self._send(joined[:cut])
        return len(text)

    def flush(self) -> None:
        """Send what is buffered, even without a newline."""
        with self._lock:
            if self._pending:
                joined = "".join(self._pending)
                self._pending = []
                self._pending_size = 0
                self._send(joined)

    def _send(self, text: str) -> None:
        for start in range(0, len(text), _MAX_CHUNK_CHARACTERS):
            chunk = text[start : start + _MAX_CHUNK_CHARACTERS]
            processor_context.send_to_agent(TaskLog(self._task_id, self._stream, chunk))


@contextlib.contextmanager
def redirect_output(task_id: bytes) -> Iterator[None]:
    """Send the task's stdout and stderr to its client while the block runs; flush both at the end."""
    stdout, stderr = sys.stdout, sys.stderr
    out, err = TaskOutput(task_id, LogStream.STDOUT), TaskOutput(task_id, LogStream.STDERR)
    sys.stdout, sys.stderr = out, err
    try:
        yield
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        out.flush()
        err.flush()
