"""scaler_top's app, headless (textual's test driver, no terminal), fed by a plain zmq PUB in this process."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time

import pytest
import zmq

from scaler.config.top import TopConfig
from scaler.monitor.top import TopApp
from scaler.protocol.codec import encode
from scaler.protocol.messages import RunningTask, StatusEvents, TaskEventKind, TaskEventRecord, WorkerState
from tests.terminal.fake_feed import snapshot

pytestmark = pytest.mark.timeout(30)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_names_that_look_like_markup_are_shown_as_they_are() -> None:
    port = free_port()
    context: zmq.Context = zmq.Context()
    publisher = context.socket(zmq.PUB)
    publisher.bind(f"tcp://127.0.0.1:{port}")
    odd = snapshot(1.0, workers=2)
    task = RunningTask(b"t", "f[bold]x[/]", b"client|c", 1.0)
    odd.workers[1] = dataclasses.replace(odd.workers[1], running=[task], state=WorkerState.LOST)
    failed = TaskEventRecord(TaskEventKind.FAILED, 1.0, b"t", b"client|c", b"", "g[/oops]", 1, 0, 0, 0, "[red]")

    async def scenario() -> tuple[str, list[str], str]:
        app = TopApp(TopConfig(address=f"tcp://127.0.0.1:{port}"))
        async with app.run_test(size=(160, 45)) as pilot:
            deadline = time.monotonic() + 10
            while app.model.snapshot is None and time.monotonic() < deadline:
                publisher.send(encode([odd, StatusEvents(1.0, time.time(), [failed], [], 0)]))
                await pilot.pause(0.1)
            await pilot.pause(0.3)
            table = app.query_one("#workers")
            cells = [str(cell) for cell in table.get_row_at(1)]  # type: ignore[attr-defined]
            events = str(app.query_one("#events").render())
            await pilot.press("q")
        return str(app.return_value), cells, events

    try:
        status, cells, events = asyncio.run(scenario())
    finally:
        publisher.close(linger=0)
        context.term()
    assert status == "0"
    assert cells[1] == "lost" and cells[3] == "f[bold]x[/]"
    assert "task g[/oops] failed ([red])" in events
