"""The worker: an agent process and the processor subprocesses that run its tasks.

::

    scheduler ◀──DEALER──▶ agent.py (poll loop on io/transport.py's DealerTransport)
                              │        └──▶ state.py (WorkerState: pure)
                              │               ├─ processor_table.py: each processor's lifecycle
                              │               │  (starting, idle, running, parked) and its indexes
                              │               ├─ caches.py: function/object bytes, who holds what
                              │               └─ utility/task_queue.py: the queued tasks
                              │ pipe per processor (processes.py: start, hold, reap)
                              ▼
                           processor.py ── runs one task: functions and objects cached by id,
                              │            profiling.py, output.py (TaskLog lines)
                              └── processor_context.py: the scheduler's address for nested
                                  clients, and blocked() so a waiting parent is parked

A worker runs one task at a time. A task that waits on other tasks (``blocked()``) is parked
on its processor while the worker's next tasks run on another one.
"""
