"""``ClientConfig``: the settings of a ``Client``, whose keyword arguments take their defaults from here."""

from __future__ import annotations

import dataclasses

from scaler.config.settings import setting

# Here, not in the client's modules: this module is read by every process's
# command line, and the encoder would bring the whole client along.
AUTOMATIC_OBJECT_CACHE_BYTES = 256 * 1024 * 1024  # unpinned automatic objects kept, in bytes


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClientConfig:
    """A client's settings (``Client(address, **settings)``); a ``[client]`` section of a file holds them too."""

    address: str | None = setting(
        None,
        help="the scheduler's address; none: the scheduler of the task this client runs in, else a private "
        "local cluster",
        group="arguments",
        positional=True,
    )
    profiling: bool = setting(False, help="measure every task (future.profiling_info())", group="scheduler")
    timeout_seconds: float = setting(
        60.0, help="fail pending futures after this long without a word from the scheduler", group="timeouts"
    )
    heartbeat_interval_seconds: float = setting(
        2.0, help="how often the client tells the scheduler it is alive", group="timeouts"
    )
    stream_output: bool = setting(
        False,
        help="print what tasks write on stdout and stderr, each line prefixed with the task id",
        group="scheduler",
    )
    object_cache_bytes: int = setting(
        AUTOMATIC_OBJECT_CACHE_BYTES,
        help="how many bytes of automatic objects (big arguments) no pending task uses the scheduler keeps",
        group="scheduler",
    )
    keys_dir: str | None = setting(
        None,
        help="a directory made by `scaler_keygen DIR`, or a copy holding client.key_secret and scheduler.key",
        group="keys",
        metavar="DIR",
    )
    key_file: str | None = setting(None, help="this client's key pair (overrides keys_dir)", group="keys")
    scheduler_key_file: str | None = setting(
        None, help="the scheduler's public key, scheduler.key (overrides keys_dir)", group="keys"
    )
