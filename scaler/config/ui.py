"""``UIConfig``: the web dashboard's settings, for ``scaler_ui`` (``scaler_gui``) and a ``[ui]`` section."""

from __future__ import annotations

import dataclasses

from scaler.config.logging_setup import LoggingSettings
from scaler.config.settings import setting
from scaler.io.sockets import validate_address


def split_host_port(address: str) -> tuple[str, int]:
    """``127.0.0.1:8787`` -> ``("127.0.0.1", 8787)``; ``[::1]:8787`` -> ``("::1", 8787)``; ValueError if not so."""
    host, colon, port = address.rpartition(":")
    host = host.strip("[]")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad dashboard address {address!r}: give HOST:PORT, e.g. 127.0.0.1:8787")
    return host, int(port)


@dataclasses.dataclass(frozen=True, kw_only=True)
class UIConfig(LoggingSettings):
    """The web dashboard: which status feed it reads, where it serves, and how much it remembers."""

    address: str = setting(
        "",
        help="the scheduler's monitor address (its status feed), e.g. tcp://127.0.0.1:8518: by default the "
        "scheduler's port + 2",
        group="arguments",
        positional=True,
    )
    ui_address: str = setting(
        "127.0.0.1:8787",
        help="where the dashboard serves HTTP, HOST:PORT; a host other than loopback needs --ui-token or --insecure",
        group="dashboard",
        metavar="HOST:PORT",
    )
    ui_token: str | None = setting(
        None,
        help="a secret the page asks for; the API, the live updates and /metrics require it",
        group="dashboard",
        metavar="TOKEN",
    )
    insecure: bool = setting(
        False,
        help="serve a non-loopback --ui-address without a token: anyone who can reach it sees the cluster",
        group="dashboard",
    )
    tasks_ring_size: int = setting(
        100_000,
        help="how many recent tasks the tasks view keeps; older ones are forgotten, so memory stays bounded",
        group="dashboard",
        metavar="N",
    )
    history_seconds: float = setting(
        600.0, help="how far back the overview's graphs and the task stream go", group="dashboard"
    )
    feed_silent_seconds: float = setting(
        10.0,
        help="/health answers 503 once the status feed has been silent this long",
        group="dashboard",
    )
    keys_dir: str | None = setting(
        None,
        help="a directory made by `scaler_keygen DIR`, or a copy holding monitor.key_secret and scheduler.key "
        "(for a scheduler with keys)",
        group="keys",
        metavar="DIR",
    )
    key_file: str | None = setting(
        None, help="the monitor's key pair (overrides --keys-dir)", group="keys", metavar="FILE"
    )
    scheduler_key_file: str | None = setting(
        None, help="the scheduler's public key, scheduler.key (overrides --keys-dir)", group="keys", metavar="FILE"
    )
    exit_with_parent: bool = setting(False, help="stop when the parent process exits", group="dashboard", hidden=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.address:
            validate_address(self.address)
        split_host_port(self.ui_address)
        if self.ui_token is not None and not self.ui_token:
            raise ValueError("ui_token cannot be empty: give a secret, or leave it out")
        if self.tasks_ring_size < 1:
            raise ValueError(f"tasks_ring_size must be at least 1, got {self.tasks_ring_size}")
        if self.history_seconds <= 0:
            raise ValueError(f"history_seconds must be more than 0, got {self.history_seconds}")
        if self.feed_silent_seconds <= 0:
            raise ValueError(f"feed_silent_seconds must be more than 0, got {self.feed_silent_seconds}")
