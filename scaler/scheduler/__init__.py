"""The scheduler: a pure core that decides, and an I/O shell (server.py) that moves frames.

::

    clients ──┐                                         ┌──▶ Send(client, TaskResult | TaskCancelConfirm | ...)
              ├──▶ server.py ──handle(source, msg, now)──▶ state.py: SchedulerState
    workers ──┘    (ROUTER,      tick(now), dispatch()       │ picks on_<message> by type
                    poll loop)                               ▼
                                    client_messages.py     worker_messages.py
                                    (Task, GraphTask,       (WorkerHeartbeat, TaskStarted,
                                     TaskCancel, objects,    TaskResult, TaskCancelConfirm,
                                     heartbeats, goodbyes)   TaskLog, BalanceResponse, goodbyes)
                                              │                      │
                                              ▼                      ▼
                               lifecycle.py: SchedulerBook, the task operations:
                               _end (the one way a task ends), _fail, _take_back,
                               _requeue, _cancel, _dispatch (applies placement's plans)
                                              │ reads and changes the stores
                   ┌───────────┬──────────────┼───────────┬────────────┬────────────┐
                   ▼           ▼              ▼           ▼            ▼            ▼
              clients.py   workers.py   task_table.py  graph_table  functions.py  credits.py
              ClientTable  WorkerTable  TaskRecord +   GraphTable   Function-     Credits
              (liveness)   (lifecycle)  transitions,   (node_done)  Registry      (backpressure)
                                        task_queue.py, task_tree.py, object_store.py

    placement.py (plan_assignments, plan_steal) and balancer.py only plan: they read the stores
    and return steps (Assign, Reject, SetAside, Drop; tasks to ask back) that lifecycle.py applies.

    status.py: the status feed's pure part. StatusRecorder keeps the totals, and the events the
    handlers report while a subscriber listens; build_snapshot (SchedulerState.status(now)) reads
    the stores into a StatusSnapshot. publisher.py is the shell's XPUB socket that sends them.

One task: ``Task`` from a client -> ``on_task`` (function registry, credits, object check) ->
``TaskQueue`` -> ``_dispatch``: ``plan_assignments`` picks the least loaded worker that can run
it -> ``Send(worker, Task + the function and objects it lacks)`` -> ``TaskStarted`` (its death
now counts) -> ``TaskResult`` from the worker holding the current attempt -> ``_end``: the record
moves to ``DONE``, is forgotten, and the result goes to the client (a big one stays here as an
object). A graph's nodes wait in ``GraphTable`` until ``node_done`` says their inputs are in.

The core reads no clock and touches no socket: every entry point takes ``now`` (or uses the
latest it was given) and returns its own list of instructions. If a handler raises, the core
fails stop: ``SchedulerShutdown`` to every peer, then ``Stop`` (see docs/architecture.md).
``SchedulerState.validate()`` checks every store and how they agree; the hypothesis state
machines in tests/unit run it after every step.
"""
