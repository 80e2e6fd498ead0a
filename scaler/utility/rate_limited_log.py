"""A log line that a flood cannot multiply: hostile or broken peers must not fill the disk.

It reads no clock: every call takes ``now`` (seconds on any monotonic scale), so the scheduler's
pure core can use it, and the shells pass ``time.monotonic()``.
"""

from __future__ import annotations

import logging

_default_logger = logging.getLogger(__name__)


class RateLimitedLog:
    """Logs at most ``burst`` lines per ``interval`` seconds, then says how many it held back."""

    def __init__(self, interval: float = 5.0, logger: logging.Logger | None = None, burst: int = 1) -> None:
        self.interval = interval
        self.burst = max(1, burst)
        self._logger = logger or _default_logger
        self._window_start = float("-inf")
        self._logged = 0
        self._suppressed = 0

    def warning(self, now: float, message: str, *args: object) -> None:
        """Log a warning, unless the window's quota is used up."""
        self.log(logging.WARNING, now, message, *args)

    def error(self, now: float, message: str, *args: object) -> None:
        """Log an error, unless the window's quota is used up."""
        self.log(logging.ERROR, now, message, *args)

    def info(self, now: float, message: str, *args: object) -> None:
        """Log at info level, unless the window's quota is used up."""
        self.log(logging.INFO, now, message, *args)

    def log(self, level: int, now: float, message: str, *args: object) -> None:
        """Log at ``level`` unless ``burst`` lines went out less than ``interval`` seconds before ``now``."""
        if now - self._window_start >= self.interval:
            self._window_start, self._logged = now, 0
        if self._logged >= self.burst:
            self._suppressed += 1
            return
        if self._suppressed:
            message += f" ({self._suppressed} similar messages suppressed)"
            self._suppressed = 0
        self._logged += 1
        self._logger.log(level, message, *args)
