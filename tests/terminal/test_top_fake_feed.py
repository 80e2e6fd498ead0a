"""scaler_top under tmux, fed by a plain zmq PUB (tests/terminal/fake_feed.py): the figures, a re-sort by key,
the silence line and the recovery when the publisher comes back on the same port, and ``q`` exiting 0."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.terminal.tmux import TmuxScreen, require_tmux

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def start_feed(port: int, workers: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.terminal.fake_feed", str(port), str(workers)], cwd=ROOT, env=environment()
    )


def top_command(port: int) -> str:
    return shlex.join([sys.executable, "-m", "scaler.cli.top", f"tcp://127.0.0.1:{port}"])


def worker_order(screen: str) -> list[str]:
    """The fake workers' names (w0, w1, ...) in the order the workers table shows them."""
    return re.findall(r"^\s*(w\d)\|100\d\|", screen, flags=re.MULTILINE)


def finished(screen: str) -> int:
    found = re.search(r"totals:.*?finished (\d+)", screen)
    return int(found.group(1)) if found else -1


@pytest.fixture
def feed_port() -> Iterator[int]:
    require_tmux()
    yield free_port()


def test_top_shows_the_feed_resorts_says_when_silent_recovers_and_quits(feed_port: int) -> None:
    feed = start_feed(feed_port, workers=4)
    top = TmuxScreen(top_command(feed_port), environment())
    try:

        def ready(screen: str) -> bool:  # the footer shows the keys once the screen is drawn
            return "workers 4 (active 4)" in screen and len(worker_order(screen)) == 4 and "u sort queued" in screen

        screen = top.wait_for(ready, 30, "4 workers and the keys")
        assert worker_order(screen) == ["w0", "w1", "w2", "w3"]  # by name, the default
        assert "q quit" in screen
        first = finished(screen)
        top.wait_for(lambda s: finished(s) > first, 10, "the finished count to move")

        top.press("m")  # biggest RSS first: w3 has the most
        top.wait_for(lambda s: worker_order(s) == ["w3", "w2", "w1", "w0"], 10, "workers sorted by RSS")
        top.press("m")  # again: the other way
        top.wait_for(lambda s: worker_order(s) == ["w0", "w1", "w2", "w3"], 10, "workers sorted by RSS, ascending")
        top.press("u")  # most queued first
        top.wait_for(lambda s: worker_order(s) == ["w3", "w2", "w1", "w0"], 10, "workers sorted by queued")

        feed.terminate()
        feed.wait(10)
        screen = top.wait_for(lambda s: "silent for" in s, 15, "the silence line")
        assert f"scheduler at tcp://127.0.0.1:{feed_port} silent for" in screen and "reconnecting" in screen

        feed = start_feed(feed_port, workers=2)  # back, on the same port, with 2 workers
        screen = top.wait_for(lambda s: "workers 2 (active 2)" in s and "silent" not in s, 30, "the recovery")
        assert "live: tcp://127.0.0.1:" in screen and worker_order(screen) == ["w1", "w0"]  # still by queued

        top.press("q")
        top.wait_for(lambda s: "EXIT=" in s, 15, "scaler_top to exit")
        assert "EXIT=0" in top.screen()
    finally:
        top.close()
        feed.kill()
        feed.wait(10)


def test_ctrl_c_exits_0_and_restores_the_terminal(feed_port: int) -> None:
    top = TmuxScreen(top_command(feed_port), environment())  # no feed at all: it waits for one
    try:
        screen = top.wait_for(lambda s: "connecting to" in s or "silent for" in s, 30, "scaler_top to start")
        assert "waiting for the first snapshot" in screen
        top.press("C-c")
        screen = top.wait_for(lambda s: "EXIT=" in s, 15, "scaler_top to exit")
        assert "EXIT=0" in screen
        assert "workers" not in screen  # the alternate screen is gone: the shell's own screen is back
    finally:
        top.close()
