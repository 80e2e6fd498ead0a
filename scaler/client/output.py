"""``TaskOutputPrinter``: prints what tasks wrote (``Client(stream_output=True)``) on the client.

Each ``TaskLog`` goes to the client's ``sys.stdout`` or ``sys.stderr``, every line prefixed with
``[<task id hex>] `` so the output of concurrent tasks stays readable. A line that arrives in
pieces is held until its end (or its task's result) so the prefix is written once per line.
Where output was dropped on its way (over an output limit, ``scaler/io/output_limits.py``), a
line says how much, in the stream and at the place where it is missing.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from scaler.protocol.messages import LogStream, TaskLog

logger = logging.getLogger(__name__)


class TaskOutputPrinter:
    """Writes ``TaskLog`` text with a task-id prefix; called on the client's agent thread only."""

    def __init__(self) -> None:
        self._partial: dict[tuple[bytes, LogStream], str] = {}

    def on_task_log(self, log: TaskLog) -> None:
        """Print the complete lines of ``log``; keep an unfinished last line for later."""
        key = (log.task_id, log.stream)
        text = self._partial.pop(key, "")
        if log.dropped_bytes > 0:  # the gap comes before this text: end the line it cut, then say so
            notice = f"... {log.dropped_bytes:,} bytes of output dropped (over the output limit)\n"
            self._write(log.task_id, log.stream, [text + "\n", notice] if text else [notice])
            text = ""
        text += log.text
        lines = text.splitlines(keepends=True)
        if lines and not lines[-1].endswith(("\n", "\r")):
            self._partial[key] = lines.pop()
        if lines:
            self._write(log.task_id, log.stream, lines)

    def on_task_done(self, task_id: bytes) -> None:
        """Print what is left of a finished task's unfinished lines."""
        if not self._partial:
            return
        for stream in (LogStream.STDOUT, LogStream.STDERR):
            rest = self._partial.pop((task_id, stream), None)
            if rest:
                self._write(task_id, stream, [rest + "\n"])

    @staticmethod
    def _write(task_id: bytes, stream: LogStream, lines: list[str]) -> None:
        target: TextIO = sys.stderr if stream is LogStream.STDERR else sys.stdout
        prefix = f"[{task_id.hex()}] "
        try:
            target.write("".join(prefix + line for line in lines))
            target.flush()
        except (OSError, ValueError) as error:  # a closed pipe (| head) or a full disk must not kill the client
            logger.debug("could not print task %s output: %s", task_id.hex(), error)
