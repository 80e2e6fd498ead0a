"""The logging settings every scaler process has, and how a process applies them.

``--logging-paths`` takes several outputs: ``/dev/stdout`` (the default, also spelled ``-``),
``/dev/stderr``, or files, appended to. A worker appends ``-PID`` to each file's name, as Scaler
does, so that the workers of one ``scaler_cluster -lp w.log`` write ``w.log-1234``,
``w.log-1235``, ... while the cluster command itself writes ``w.log``. ``--logging-config-file``
takes a standard ``logging.config`` file (``fileConfig`` format), which then sets logging up; as
given, ``--logging-paths`` are added to it (Scaler ignored them then; here logs go where both point).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys

from scaler.config.settings import LOGGING_LEVELS, setting

DEFAULT_LOGGING_PATHS = ("/dev/stdout",)
DEFAULT_LOGGING_FORMAT = "[%(asctime)s] %(levelname)s %(processName)s(%(process)d) %(name)s: %(message)s"
_STDOUT = ("/dev/stdout", "-")
_STDERR = ("/dev/stderr",)


@dataclasses.dataclass(frozen=True, kw_only=True)
class LoggingSettings:
    """Where a scaler process logs, and how much."""

    logging_paths: tuple[str, ...] = setting(
        DEFAULT_LOGGING_PATHS,
        help="where to log: one or more of /dev/stdout, /dev/stderr and files (appended to); "
        "a worker adds -PID to a file's name",
        group="logging",
        scaler_flags=("--logging-paths", "-lp"),
        metavar="PATH",
    )
    logging_level: str = setting(
        "INFO",
        help="the least severe level logged: " + ", ".join(LOGGING_LEVELS),
        group="logging",
        scaler_flags=("--logging-level", "-ll"),
        choices=LOGGING_LEVELS,
        metavar="LEVEL",
    )
    logging_config_file: str | None = setting(
        None,
        help="a logging.config file (fileConfig format) that sets logging up; paths given with --logging-paths "
        "are added to it",
        group="logging",
        scaler_flags=("--logging-config-file", "-lc", "-lcf"),
        metavar="FILE",
    )
    logging_format: str = setting(
        DEFAULT_LOGGING_FORMAT, help="the format of each log line (logging's %-style)", group="logging"
    )

    def __post_init__(self) -> None:
        level = self.logging_level.upper()
        if level not in LOGGING_LEVELS:
            raise ValueError(f"logging_level must be one of {', '.join(LOGGING_LEVELS)}, got {self.logging_level!r}")
        object.__setattr__(self, "logging_level", level)  # frozen: normalised once, here
        if not self.logging_paths and self.logging_config_file is None:
            raise ValueError("logging_paths needs at least one path (/dev/stdout, /dev/stderr or a file)")


def log_file_path(path: str, append_pid: bool) -> str:
    """The file a process writes for ``path``: ``~`` expanded, and ``-PID`` appended for a worker."""
    path = os.path.expanduser(path)
    return f"{path}-{os.getpid()}" if append_pid else path


def _handlers(paths: tuple[str, ...], append_pid: bool) -> list[logging.Handler]:
    handlers: list[logging.Handler] = []
    try:
        for path in dict.fromkeys(paths):  # each output once
            if path in _STDOUT:
                handlers.append(logging.StreamHandler(sys.stdout))
            elif path in _STDERR:
                handlers.append(logging.StreamHandler(sys.stderr))
            else:
                handlers.append(logging.FileHandler(log_file_path(path, append_pid), encoding="utf-8"))
    except OSError:
        for handler in handlers:
            handler.close()
        raise
    return handlers


def setup_logging(settings: LoggingSettings, append_pid: bool = False) -> None:
    """Send this process's logs where ``settings`` say, replacing any handlers already set up.

    With a logging config file, the file sets logging up, and ``logging_paths`` other than the
    default are added to the root logger. Raises ``OSError`` if a log file cannot be opened, and
    ``ValueError`` for a bad logging config file, before anything is logged.
    """
    level = getattr(logging, settings.logging_level)
    if settings.logging_config_file is None:
        handlers = _handlers(settings.logging_paths, append_pid)
        logging.basicConfig(level=level, format=settings.logging_format, handlers=handlers, force=True)
        return
    if not os.path.isfile(settings.logging_config_file):
        raise ValueError(f"logging config file {settings.logging_config_file} does not exist")
    extra = () if settings.logging_paths == DEFAULT_LOGGING_PATHS else settings.logging_paths
    handlers = _handlers(extra, append_pid)  # opened first: a bad path fails before the file is applied
    try:
        from logging import config  # only with a config file: 10+ ms of imports every process would pay

        config.fileConfig(settings.logging_config_file, disable_existing_loggers=False)
    except (KeyError, ValueError, TypeError, RuntimeError) as error:  # what a malformed file raises
        for handler in handlers:
            handler.close()
        raise ValueError(f"logging config file {settings.logging_config_file}: {error!r}") from None
    for handler in handlers:
        handler.setFormatter(logging.Formatter(settings.logging_format))
        handler.setLevel(level)
        logging.getLogger().addHandler(handler)
