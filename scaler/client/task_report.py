"""``Client.task_report``: one record per task of where its time and memory went, and their CSV.

A record joins what the client knows of a future (its task id, function name and outcome) with
the figures of its ``ProfileResult`` (``Client(profiling=True)``): queue wait and transfer,
measured by the scheduler; loading, run and CPU time, peak memory, result size and serialization,
measured by the processor. A task that was not profiled, or has not finished, has no figures
(``None``; an empty cell in the CSV).
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from scaler.client.future import ProfileResult, ScalerFuture

__all__ = ["TaskRecord", "records", "write_csv"]


@dataclass(frozen=True)
class TaskRecord:
    """Where one task's time and memory went; seconds and bytes, ``None`` when not measured.

    ``status`` is ``"pending"``, ``"success"``, ``"failed"`` or ``"cancelled"``. ``worker`` is
    the worker that ran it when the client knows it, else ``""`` (results do not name their
    worker today).
    """

    task_id: str  # hex, as in the logs
    function: str
    status: str
    queue_wait_s: float | None = None
    transfer_s: float | None = None
    load_s: float | None = None
    run_s: float | None = None
    cpu_s: float | None = None
    memory_peak: int | None = None
    result_bytes: int | None = None
    serialize_s: float | None = None
    worker: str = ""


FIELDS = [field.name for field in dataclasses.fields(TaskRecord)]


def status(future: concurrent.futures.Future[Any]) -> str:
    """``pending``, ``success``, ``failed`` or ``cancelled``, without waiting or fetching anything."""
    if future.cancelled():
        return "cancelled"
    if not future.done():
        return "pending"
    if not concurrent.futures.Future.done(future):
        return "success"  # done, and its value still on the scheduler: only successes are kept there
    return "failed" if future.exception() is not None else "success"


def record(future: ScalerFuture) -> TaskRecord:
    """The record of one future."""
    head = (future.task_id.hex(), future.function_name, status(future))
    try:
        info: ProfileResult | None = future.profiling_info()
    except ValueError:  # not profiled, or not finished
        info = None
    if info is None:
        return TaskRecord(*head)
    return TaskRecord(
        *head,
        queue_wait_s=info.queue_wait_s,
        transfer_s=info.transfer_s,
        load_s=info.load_s,
        run_s=info.duration_s,
        cpu_s=info.cpu_time_s,
        memory_peak=info.memory_peak,
        result_bytes=info.result_bytes,
        serialize_s=info.serialize_s,
    )


def records(futures: Iterable[ScalerFuture] | Mapping[Any, ScalerFuture]) -> list[TaskRecord]:
    """One record per future, in the order given (a mapping's values, such as ``get(block=False)``'s)."""
    if isinstance(futures, Mapping):
        futures = futures.values()
    return [record(future) for future in futures]


def write_csv(rows: Iterable[TaskRecord], path: str | os.PathLike[str]) -> None:
    """Write records to ``path`` as CSV with a header row; ``None`` becomes an empty cell."""
    with open(path, "w", newline="", encoding="utf-8") as output:
        writer = csv.DictWriter(output, fieldnames=FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({name: ("" if value is None else value) for name, value in dataclasses.asdict(row).items()})
