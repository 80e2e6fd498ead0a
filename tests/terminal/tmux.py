"""Drive a program in a detached tmux session, as a person at a terminal would: type keys, read the screen.

Each ``TmuxScreen`` runs its own tmux server (``tmux -L NAME``), so tests never touch anyone else's
sessions, and ``close()`` stops that server only.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping

import pytest

COLUMNS, LINES = 160, 45


def require_tmux() -> None:
    """Skip the test, saying why, when tmux is not installed."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (apt-get install tmux): scaler_top's terminal tests need it")


class TmuxScreen:
    """``command`` (a shell line) running in a COLUMNS x LINES pane; the pane stays open after it exits."""

    def __init__(self, command: str, env: Mapping[str, str] | None = None) -> None:
        self.server = f"scaler-test-{uuid.uuid4().hex[:8]}"
        environment = dict(os.environ if env is None else env)
        environment.setdefault("LANG", "C.UTF-8")
        environment.pop("TMUX", None)  # a test run from inside tmux still gets a server of its own
        # The pane outlives the command, so its last words (EXIT=...) can still be read.
        line = f"{command}; echo EXIT=$?; sleep 3600"
        self._tmux(
            "new-session",
            "-d",
            "-s",
            "test",
            "-x",
            str(COLUMNS),
            "-y",
            str(LINES),
            f"sh -c {shlex.quote(line)}",
            env=environment,
        )

    def _tmux(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        done = subprocess.run(
            ["tmux", "-L", self.server, *args], capture_output=True, text=True, timeout=10, env=env, check=True
        )
        return done.stdout

    def screen(self) -> str:
        """What the pane shows now."""
        return self._tmux("capture-pane", "-p", "-t", "test")

    def press(self, *keys: str) -> None:
        """Type ``keys`` (tmux key names: ``q``, ``C-c``, ``Enter``)."""
        self._tmux("send-keys", "-t", "test", *keys)

    def wait_for(self, check: Callable[[str], bool], timeout: float, what: str) -> str:
        """The screen once ``check(screen)`` holds; fails, showing the last screen, after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if check(screen):
                return screen
            if time.monotonic() > deadline:
                pytest.fail(f"waited {timeout} s for {what}; the screen shows:\n{screen}")
            time.sleep(0.2)

    def close(self) -> None:
        """Stop this screen's tmux server, and with it the program."""
        subprocess.run(["tmux", "-L", self.server, "kill-server"], capture_output=True, timeout=10, check=False)
