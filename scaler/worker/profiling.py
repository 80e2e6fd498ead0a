"""Task profiling in the processor: wall time, CPU time and peak memory of one task.

``TaskProfile()`` starts measuring; ``fill(result)`` writes ``duration_seconds``, ``cpu_seconds``
(``time.process_time``: every thread of the processor) and ``peak_memory_bytes`` into the
task's ``TaskResult``. Peak memory is the processor's largest resident set size while the task
ran, its interpreter included. On Linux the kernel keeps that high-water mark itself: the
processor resets it when the task starts (``/proc/self/clear_refs``) and reads it when the task
ends (``VmHWM``), which is exact and costs no thread. Elsewhere, a thread samples the resident
set size every 10 ms and keeps the largest; short spikes between samples are missed.
"""

from __future__ import annotations

import threading
import time

import psutil

from scaler.protocol.messages import TaskResult

_SAMPLE_SECONDS = 0.01
_CLEAR_REFS = "/proc/self/clear_refs"
_STATUS = "/proc/self/status"
_kernel_peak_works: bool | None = None  # learnt on first use


def _reset_kernel_peak() -> bool:
    """Reset the kernel's resident-set high-water mark; False where that is not possible."""
    global _kernel_peak_works
    if _kernel_peak_works is False:
        return False
    try:
        with open(_CLEAR_REFS, "w") as clear_refs:
            clear_refs.write("5")
        _kernel_peak_works = _read_kernel_peak() > 0
    except OSError:
        _kernel_peak_works = False
    return _kernel_peak_works


def _read_kernel_peak() -> int:
    with open(_STATUS) as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


class _RssSampler:
    """Samples the resident set size on a thread until stopped; ``peak`` is the largest seen."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._stop = threading.Event()
        self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(_SAMPLE_SECONDS):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return int(max(self.peak, self._process.memory_info().rss))


class TaskProfile:
    """Measures one task from construction until ``fill``."""

    def __init__(self) -> None:
        self._sampler = None if _reset_kernel_peak() else _RssSampler()
        self._cpu = time.process_time()
        self._wall = time.perf_counter()

    def fill(self, result: TaskResult) -> None:
        """Write the measurements into the task's result."""
        result.duration_seconds = time.perf_counter() - self._wall
        result.cpu_seconds = time.process_time() - self._cpu
        result.peak_memory_bytes = _read_kernel_peak() if self._sampler is None else self._sampler.stop()
