"""scaler_top's pure part: the rows, the order, the header, the status line and the events, from hand-made snapshots."""

from __future__ import annotations

import dataclasses

import pytest

from scaler.monitor.top_model import (
    SORT_KEYS,
    TopModel,
    format_bytes,
    format_seconds,
    peer_name,
    sort_key,
    worker_row,
)
from scaler.protocol.messages import (
    PeerEventKind,
    PeerEventRecord,
    RunningTask,
    StatusEvents,
    TaskEventKind,
    TaskEventRecord,
    WorkerState,
)
from tests.terminal.fake_feed import snapshot, worker

pytestmark = pytest.mark.timeout(10)


def names(model: TopModel) -> list[str]:
    return [row[0] for row in model.workers()]


def test_formats() -> None:
    assert [format_bytes(n) for n in (0, 1023, 1536, 200 * 1024, 5 * 1024**3)] == [
        "0B",
        "1023B",
        "1.5K",
        "200K",
        "5.0G",
    ]
    assert [format_seconds(s) for s in (-1, 4.25, 65, 7260, 3 * 86400 + 4 * 3600)] == [
        "-",
        "4.2s",
        "1m05s",
        "2h01m",
        "3d04h",
    ]
    assert peer_name(b"worker|host|12|ab") == "host|12|ab"
    assert peer_name(b"just-a-name") == "just-a-name"
    assert peer_name(b"\x8a\x01\x02\x03\x04\x05\x06\x07\x08\x09") == "8a01020304050607"  # binary: hex


def test_a_worker_row_shows_its_task_processors_and_figures() -> None:
    assert worker_row(worker(2)) == (
        "w2|1002|abcd",
        "active",
        "20",
        "work_2",
        "2.0s",
        "1/0/0",
        "70.0%",
        "3.0M",
        "0.5s",
        "98",
    )
    idle = worker_row(worker(0, WorkerState.DRAINING))
    assert idle[1:5] == ("draining", "0", "", "")


def test_a_parked_parent_and_its_running_child_show_the_longest_and_a_count() -> None:
    child = RunningTask(b"c", "child", b"client|x", 0.5)
    parent = RunningTask(b"p", "parent", b"client|x", 9.0)
    busy = dataclasses.replace(worker(1), running=[child, parent], processors_parked=1)
    assert worker_row(busy)[3:6] == ("parent (+1)", "9.0s", "1/1/0")


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("n", ["w0", "w1", "w2", "w3"]),
        ("u", ["w3", "w2", "w1", "w0"]),  # most queued first
        ("c", ["w0", "w1", "w2", "w3"]),  # busiest CPU first
        ("m", ["w3", "w2", "w1", "w0"]),  # biggest RSS first
        ("t", ["w3", "w2", "w1", "w0"]),  # longest-running task first; idle last
        ("d", ["w0", "w1", "w2", "w3"]),  # most done first
    ],
)
def test_each_key_orders_the_workers_and_a_second_press_flips_it(key: str, expected: list[str]) -> None:
    model = TopModel("tcp://127.0.0.1:1", sort_by="done")
    model.take([snapshot(1.0, workers=4)])
    if key == "d":
        model.press("n")  # so that pressing d chooses it anew rather than flipping it
    assert model.press(key)
    assert [name.split("|")[0] for name in names(model)] == expected
    assert model.press(key)
    assert [name.split("|")[0] for name in names(model)] == expected[::-1]
    marked = [column for column in model.worker_columns() if column.endswith(("▲", "▼"))]
    assert marked == [sort_key(key).column + " ▲"] or marked == [sort_key(key).column + " ▼"]


def test_ties_keep_name_order_and_other_keys_are_not_sort_keys() -> None:
    model = TopModel("tcp://127.0.0.1:1", sort_by="queued")
    same = snapshot(1.0, workers=3)
    same.workers[:] = [dataclasses.replace(w, queued=5) for w in reversed(same.workers)]
    model.take([same])
    assert [name.split("|")[0] for name in names(model)] == ["w0", "w1", "w2"]
    assert not model.press("x") and not model.press("q")  # q quits; it is never a sort key
    assert {entry.key for entry in SORT_KEYS}.isdisjoint({"q"})


def test_header_shows_workers_tasks_totals_and_the_finished_rate() -> None:
    model = TopModel("tcp://127.0.0.1:1")
    assert model.header()[0].startswith("waiting for the first snapshot")
    assert model.take([snapshot(10.0, workers=3, finished=100)])
    first = model.header()
    assert "workers 3 (active 3)" in first[1] and "tasks: queued 30  running 3" in first[1]
    assert "finished 100" in first[2] and "finished/s -" in first[2]
    assert "CPU 12.5%" in first[0] and "RSS 80.0M" in first[0] and "dropped 0" in first[0] and "up 10.0s" in first[0]
    model.take([snapshot(12.0, workers=3, finished=150)])
    assert "finished/s 25.0" in model.header()[2]
    model.take([snapshot(13.0, workers=3, finished=0, scheduler_id=b"scheduler|other|2|00")])
    assert "finished/s -" in model.header()[2]  # a new scheduler: no rate across the restart


def test_clients_table() -> None:
    model = TopModel("tcp://127.0.0.1:1")
    assert model.clients() == []
    model.take([snapshot(5.0, workers=2, finished=7)])
    assert model.clients() == [("c0|1|aa", "20", "2", "7", "0", "0", "4", "5.0s")]


def test_status_line_says_when_the_scheduler_is_silent() -> None:
    model = TopModel("tcp://h:8518")
    assert model.status(1.0, False, 3.0) == ("connecting to tcp://h:8518", False)
    text, silent = model.status(4.2, False, 3.0)
    assert silent and text.startswith("scheduler at tcp://h:8518 silent for 4 s — reconnecting")
    assert "port + 2" in text
    model.take([snapshot(1.0)])
    assert model.status(0.5, True, 3.0) == ("live: tcp://h:8518", False)
    text, silent = model.status(9.0, True, 3.0)
    assert silent and "silent for 9 s" in text and "last snapshot" in text


def test_events_pane_shows_peers_failures_and_what_was_dropped() -> None:
    model = TopModel("tcp://h:1")
    joined = PeerEventRecord(PeerEventKind.WORKER_JOINED, 5.0, b"worker|w9|1|aa", "")
    died = PeerEventRecord(PeerEventKind.WORKER_DIED, 6.0, b"worker|w8|1|aa", "heartbeats stopped")
    failed = TaskEventRecord(
        TaskEventKind.FAILED, 6.0, b"\x01", b"client|c", b"worker|w9|1|aa", "boom", 1, 0.1, 0.2, 0, "FAILED"
    )
    finished = dataclasses.replace(failed, kind=TaskEventKind.FINISHED)
    assert not model.take([StatusEvents(10.0, 1000.0, [failed, finished], [joined, died], 3)])
    lines = model.events(10)
    assert [line.split(" ", 1)[1] for line in lines[:3]] == [
        "worker joined w9|1|aa",
        "worker died w8|1|aa (heartbeats stopped)",
        "task boom failed on w9|1|aa (FAILED)",
    ]
    assert lines[3] == "(3 events dropped by the scheduler's bounded feed)"
    assert len(model.events(2)) == 2 and model.events(0) == []
