"""Which queued tasks to move from busy workers to idle ones: a pure function of the loads.

Balancing runs whenever a worker is idle while another holds more than it can start soon, so
it reacts within one message turn, not on a timer. Only tasks an idle worker could run are
moved, and the first task of each worker (the one most likely running) never is.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence


def plan_balance(
    loads: Mapping[bytes, Sequence[bytes]],
    can_run: Callable[[bytes, bytes], bool],
) -> dict[bytes, list[bytes]]:
    """Return ``{busy worker: task ids to hand back}``.

    ``loads`` maps each worker to its movable tasks in dispatch order (oldest first); ``can_run(worker,
    task)`` says whether a worker has the task's capabilities. Nothing is planned unless some worker
    is idle.
    """
    idle = [worker for worker, tasks in loads.items() if not tasks]
    if not idle:
        return {}
    total = sum(len(tasks) for tasks in loads.values())
    target = max(1, math.ceil(total / len(loads)))
    plan: dict[bytes, list[bytes]] = {}
    wanted = len(idle) * target
    for worker, tasks in sorted(loads.items(), key=lambda item: -len(item[1])):
        if wanted <= 0 or len(tasks) <= target:
            break
        candidates = [task for task in tasks[1:] if any(can_run(other, task) for other in idle)]
        take = candidates[-min(len(tasks) - target, wanted, len(candidates)) :] if candidates else []
        if take:
            plan[worker] = take
            wanted -= len(take)
    return plan
