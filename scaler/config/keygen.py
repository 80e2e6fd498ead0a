"""``KeygenConfig``: what ``scaler_keygen`` makes, for its flags and a ``[keygen]`` section."""

from __future__ import annotations

import dataclasses

from scaler.config.settings import setting


@dataclasses.dataclass(frozen=True, kw_only=True)
class KeygenConfig:
    """A new keys directory, or one more key pair in an existing one."""

    directory: str = setting(
        "",
        help="where to write the keys (created with mode 0700)",
        group="arguments",
        positional=True,
        metavar="DIR",
    )
    add: str | None = setting(
        None,
        help="add one more key pair NAME to an existing DIR, and its public key to DIR/allowed_keys",
        group="keys",
        metavar="NAME",
    )
