"""Worker managers: processes that start and stop workers on an engine as the scheduler's scaling policy asks.

- ``adapter.py``: the ``EngineAdapter`` interface (start, stop gracefully, poll, forget, adopt)
  and ``WorkerCommand``, the worker command line every adapter runs.
- ``core.py``: ``ManagerState``, the manager's decisions without I/O.
- ``manager.py``: ``WorkerManager``, the process's loop (a DEALER to the scheduler).
- ``native.py``, ``slurm.py``: the adapters.
"""
