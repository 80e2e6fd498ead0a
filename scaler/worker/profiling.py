"""Task profiling in the processor: where one task's time and memory went.

``TaskProfile()`` starts measuring, before the task's objects and arguments are loaded. The
runner marks the phases of the task as it goes: ``loaded()`` once the function and arguments are
unpickled, ``ran()`` once the function returned (or raised), ``serialized(size)`` once the result
is pickled. ``fill(result)`` then writes into the task's ``TaskResult``:

- ``load_seconds``: fetching the task's objects and unpickling its function and arguments;
- ``duration_seconds`` and ``cpu_seconds``: wall and CPU time of the function call alone
  (``time.process_time``: every thread of the processor);
- ``serialize_seconds`` and ``result_bytes``: pickling the result, and the pickled size (for a
  task that raised, pickling its exception);
- ``peak_memory_bytes``: see below.

A phase the task never reached counts (almost) zero seconds: its time goes to the phase it failed in.
Peak memory is the processor's largest resident set size while the task
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
    """Measures one task from construction until ``fill``; the runner marks each phase's end."""

    def __init__(self) -> None:
        self._sampler = None if _reset_kernel_peak() else _RssSampler()
        self._cpu = time.process_time()
        self._wall = time.perf_counter()  # the start of the phase now running
        self._phase = 0  # 0 loading, 1 running, 2 serializing, 3 done
        self.load_seconds = 0.0
        self.run_seconds = 0.0
        self.cpu_seconds = 0.0
        self.serialize_seconds = 0.0
        self.result_bytes = 0

    def loaded(self) -> None:
        """The function and arguments are ready: the call starts now."""
        now = time.perf_counter()
        self.load_seconds, self._wall, self._cpu = now - self._wall, now, time.process_time()
        self._phase = 1

    def ran(self) -> None:
        """The function returned or raised."""
        now = time.perf_counter()
        self.run_seconds, self.cpu_seconds = now - self._wall, time.process_time() - self._cpu
        self._wall = now
        self._phase = 2

    def serialized(self, size: int) -> None:
        """The result is pickled, ``size`` bytes."""
        self.serialize_seconds = time.perf_counter() - self._wall
        self.result_bytes = size
        self._phase = 3

    def fill(self, result: TaskResult) -> None:
        """Write the measurements into the task's result, ending the phases it did not reach."""
        if self._phase < 1:
            self.loaded()
        if self._phase < 2:
            self.ran()
        if self._phase < 3:  # it failed: what goes back is its pickled exception
            self.serialized(len(result.payload))
        result.load_seconds = self.load_seconds
        result.duration_seconds = self.run_seconds
        result.cpu_seconds = self.cpu_seconds
        result.serialize_seconds = self.serialize_seconds
        result.result_bytes = self.result_bytes
        result.peak_memory_bytes = _read_kernel_peak() if self._sampler is None else self._sampler.stop()
