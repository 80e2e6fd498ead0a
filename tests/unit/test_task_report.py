"""Task records (``Client.task_report``) and ``ProfileResult``, from futures settled by hand (no cluster)."""

from __future__ import annotations

import csv
import pathlib
from typing import Any

from scaler import ProfileResult, TaskRecord
from scaler.client.future import ScalerFuture
from scaler.client.future_manager import ClientFutureManager
from scaler.client.task_report import FIELDS, records, write_csv
from scaler.protocol.messages import CancelConfirmType, Message, TaskCancelConfirm, TaskResult, TaskStatus

FIGURES = {
    "duration_seconds": 1.5,
    "cpu_seconds": 1.25,
    "peak_memory_bytes": 50_000_000,
    "load_seconds": 0.125,
    "serialize_seconds": 0.0625,
    "result_bytes": 1_000_000,
    "queue_wait_seconds": 2.5,
    "transfer_seconds": 0.25,
}


def decode(result: TaskResult) -> tuple[bool, Any]:
    if result.status is TaskStatus.SUCCESS:
        return True, result.payload.decode()
    return False, ValueError(result.payload.decode())


def make_manager() -> tuple[ClientFutureManager, list[Message]]:
    sent: list[Message] = []
    return ClientFutureManager(sent.append, decode), sent


def named(future: ScalerFuture, name: str) -> ScalerFuture:
    future._function_name = name  # what Client does for each task it submits
    return future


def test_profile_result_carries_every_figure_of_the_task_result() -> None:
    info = ProfileResult.from_result(TaskResult(b"t", TaskStatus.SUCCESS, b"", 0, **FIGURES))  # type: ignore[arg-type]
    assert info == ProfileResult(1.5, 1.25, 50_000_000, 0.125, 0.0625, 1_000_000, 2.5, 0.25)
    assert (info.duration_s, info.cpu_time_s, info.memory_peak) == (1.5, 1.25, 50_000_000)  # Scaler's names
    assert (info.queue_wait_s, info.transfer_s, info.load_s) == (2.5, 0.25, 0.125)
    assert ProfileResult(1.0, 0.5, 10).result_bytes == 0  # the Scaler-style three-field form still works


def test_records_of_every_outcome() -> None:
    manager, _ = make_manager()
    ok = named(manager.create(b"\x01", profiling=True), "simulate")
    bad = named(manager.create(b"\x02", profiling=True), "simulate")
    kept = named(manager.create(b"\x03", profiling=True), "big")
    gone = named(manager.create(b"\x04", profiling=True), "slow")
    waiting = named(manager.create(b"\x05", profiling=True), "slow")
    manager.on_task_result(TaskResult(b"\x01", TaskStatus.SUCCESS, b"v", 0, **FIGURES))  # type: ignore[arg-type]
    manager.on_task_result(TaskResult(b"\x02", TaskStatus.FAILED, b"no", 0, duration_seconds=0.5))
    manager.on_task_result(TaskResult(b"\x03", TaskStatus.SUCCESS, b"", 0, result_object_id=b"\x03"))
    manager.on_task_cancel_confirm(TaskCancelConfirm(b"\x04", CancelConfirmType.CANCELED))

    rows = records([ok, bad, kept, gone, waiting])
    assert [(row.task_id, row.function, row.status) for row in rows] == [
        ("01", "simulate", "success"),
        ("02", "simulate", "failed"),
        ("03", "big", "success"),  # its value still on the scheduler: not fetched for a report
        ("04", "slow", "cancelled"),
        ("05", "slow", "pending"),
    ]
    assert rows[0] == TaskRecord(
        "01", "simulate", "success", 2.5, 0.25, 0.125, 1.5, 1.25, 50_000_000, 1_000_000, 0.0625, ""
    )
    assert rows[1].run_s == 0.5
    assert rows[3].run_s is None and rows[4].queue_wait_s is None  # nothing measured


def test_records_without_profiling_have_no_figures() -> None:
    manager, _ = make_manager()
    future = named(manager.create(b"\x01"), "f")
    manager.on_task_result(TaskResult(b"\x01", TaskStatus.SUCCESS, b"v", 0, duration_seconds=1.0))
    (row,) = records({"key": future})
    assert row == TaskRecord("01", "f", "success")


def test_csv_round_trip(tmp_path: pathlib.Path) -> None:
    manager, _ = make_manager()
    done = named(manager.create(b"\x01", profiling=True), "simulate")
    pending = named(manager.create(b"\x02", profiling=True), "simulate")
    manager.on_task_result(TaskResult(b"\x01", TaskStatus.SUCCESS, b"v", 0, **FIGURES))  # type: ignore[arg-type]
    path = tmp_path / "report.csv"
    write_csv(records([done, pending]), path)
    with open(path, newline="", encoding="utf-8") as source:
        reader = csv.DictReader(source)
        assert reader.fieldnames == FIELDS
        first, second = list(reader)
    assert first["task_id"] == "01" and first["status"] == "success"
    assert float(first["queue_wait_s"]) == 2.5 and int(first["result_bytes"]) == 1_000_000
    assert float(first["run_s"]) == 1.5 and int(first["memory_peak"]) == 50_000_000
    assert second["status"] == "pending" and second["run_s"] == "" and second["worker"] == ""
