"""Reading one command's configuration: its defaults, then its section of a ``-c`` file, then its flags.

Kept apart from ``roles.py``, which imports every role's settings class: a worker or a scheduler
reads only its own, and each settings class costs its import (3-8 ms a class on a small machine).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scaler.config.settings import Config, ConfigError, check_sections, read_toml, resolve, section_values

# Every section a configuration file may have, in the launcher's order (roles.py checks it
# against its ROLES): a file's sections are checked against all of them, whichever command reads it.
SECTIONS = ("scheduler", "cluster", "worker", "worker_manager", "client", "ui", "keygen", "top")


def load_config(
    cls: type[Config], section: str, config_file: str | None = None, overrides: Mapping[str, Any] | None = None
) -> Config:
    """``cls`` from its defaults, then ``[section]`` of ``config_file``, then ``overrides`` (the command line).

    Raises ``ConfigError`` naming the file for anything wrong in it, before ``overrides`` are
    applied, and ``ValueError`` for a bad override.
    """
    file_values: dict[str, Any] = {}
    if config_file is not None:
        data = read_toml(config_file)
        check_sections(config_file, data, SECTIONS)
        file_values = section_values(cls, config_file, data, section)
        try:
            cls(**file_values)
        except ValueError as error:
            raise ConfigError(f"{config_file}: [{section}] {error}") from None
    return resolve(cls, file_values=file_values, command_line=overrides)
