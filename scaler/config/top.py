"""``TopConfig``: the settings of ``scaler_top``, for its flags and a ``[top]`` section."""

from __future__ import annotations

import dataclasses

from scaler.config.settings import setting
from scaler.io.sockets import validate_address

# What the workers table can be sorted by; scaler_top's keys pick the same (see scaler/monitor/top_model.py).
SORT_COLUMNS = ("name", "queued", "cpu", "rss", "task", "done")


@dataclasses.dataclass(frozen=True, kw_only=True)
class TopConfig:
    """What ``scaler_top`` watches, how often it redraws, and the keys it connects with."""

    address: str = setting(
        "",
        help="the scheduler's monitor address (its status feed), e.g. tcp://127.0.0.1:8518: the scheduler's port "
        "+ 2, unless the scheduler was given another --monitor-address",
        group="arguments",
        positional=True,
        metavar="MONITOR_ADDRESS",
    )
    refresh_interval_seconds: float = setting(
        1.0, help="how often the screen is redrawn (it also redraws on each snapshot)", group="timeouts"
    )
    silent_after_seconds: float = setting(
        3.0,
        help="say the scheduler is silent after this long without a message (about 3 status intervals)",
        group="timeouts",
    )
    sort_by: str = setting(
        "name",
        help="the workers table's first order: " + ", ".join(SORT_COLUMNS) + " (keys change it while running)",
        group="workers",
        choices=SORT_COLUMNS,
        metavar="COLUMN",
    )
    keys_dir: str | None = setting(
        None,
        help="a directory made by `scaler_keygen DIR`, or a copy holding scheduler.key and monitor.key_secret "
        "(client.key_secret if it has no monitor key pair)",
        group="keys",
        metavar="DIR",
    )
    key_file: str | None = setting(
        None, help="this monitor's key pair (overrides --keys-dir)", group="keys", metavar="FILE"
    )
    scheduler_key_file: str | None = setting(
        None, help="the scheduler's public key, scheduler.key (overrides --keys-dir)", group="keys", metavar="FILE"
    )

    def __post_init__(self) -> None:
        if self.address:
            validate_address(self.address)
        for name in ("refresh_interval_seconds", "silent_after_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be more than 0, got {getattr(self, name)}")
        if self.sort_by not in SORT_COLUMNS:
            raise ValueError(f"sort_by must be one of {', '.join(SORT_COLUMNS)}, got {self.sort_by!r}")
