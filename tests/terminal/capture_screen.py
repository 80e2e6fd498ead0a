"""Capture scaler_top's screen over a real local cluster, for docs/monitoring.md (not a test).

``PYTHONPATH=. python -m tests.terminal.capture_screen`` prints what a 160x45 tmux pane shows 6 s after a
client submitted 3,000 short tasks and two 30 s ones to 4 workers, blank lines squeezed.
"""

from __future__ import annotations

import math
import re
import sys
import time

from scaler import Client, SchedulerClusterCombo
from tests.terminal.test_top_fake_feed import environment
from tests.terminal.tmux import TmuxScreen


def simulate(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def price_option(n: int) -> float:
    return sum(math.sqrt(i) for i in range(n))


def capture() -> str:
    with SchedulerClusterCombo(n_workers=4, logging_level="WARNING") as combo:
        top = TmuxScreen(f"{sys.executable} -m scaler.cli.top {combo.get_monitor_address()}", environment())
        try:
            top.wait_for(lambda screen: "live:" in screen, 60, "scaler_top to hear the scheduler")
            with Client(combo.get_address()) as client:  # after top listens, so its joining shows
                [future.result() for future in [client.submit(price_option, 200_000) for _ in range(200)]]
                pending = [client.submit(simulate, 30) for _ in range(2)]
                pending += [client.submit(price_option, 300_000) for _ in range(3000)]
                time.sleep(6)
                screen = top.screen()
                for future in pending:
                    future.cancel(timeout=10)
        finally:
            top.close()
    return re.sub(r"\n{3,}", "\n\n", "\n".join(line.rstrip() for line in screen.splitlines()).strip("\n"))


if __name__ == "__main__":
    print(capture())
