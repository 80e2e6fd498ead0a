"""Who may use the dashboard: where it may bind, and how a request shows the token.

The rule is the scheduler's (``scaler.io.security.check_bind``): a loopback address needs
nothing; any other address needs ``--ui-token`` or an explicit ``--insecure``. With a token, the
page asks for it once (``/login`` sets an HttpOnly cookie), and the API, the live updates and
``/metrics`` accept it as that cookie, an ``Authorization: Bearer TOKEN`` header, or a ``token``
query parameter (for scrapers and scripts). ``/health`` and the static files need no token: they
tell nothing about the cluster.
"""

from __future__ import annotations

import hmac

from scaler.config.ui import split_host_port
from scaler.errors import InsecureBindError
from scaler.io.security import is_loopback

TOKEN_COOKIE = "scaler_ui_token"


def is_loopback_host(host: str) -> bool:
    """True if ``host`` (an IP address or ``localhost``) is reachable from this machine only."""
    return is_loopback(f"tcp://[{host}]:1" if ":" in host else f"tcp://{host}:1")


def check_ui_bind(ui_address: str, token: str | None, insecure: bool) -> None:
    """Raise ``InsecureBindError`` for a non-loopback ``ui_address`` without a token, unless ``insecure``."""
    host, _ = split_host_port(ui_address)
    if token or insecure or is_loopback_host(host):
        return
    raise InsecureBindError(
        f"refusing to serve the dashboard on {ui_address} without a token: anyone who can reach it could "
        f"watch the cluster (its clients, workers and task names). Either pass `--ui-token TOKEN` (ui_token = "
        f'"..." in [ui]; the page then asks for it), or, if every host that can reach this address is trusted, '
        f"pass `--insecure` (insecure = true). A loopback address such as 127.0.0.1:8787 needs neither."
    )


def token_matches(expected: str | None, *offered: str | None) -> bool:
    """True if no token is required, or one of ``offered`` (cookie, header, query) is it."""
    if not expected:
        return True
    wanted = expected.encode()
    return any(candidate and hmac.compare_digest(candidate.encode(), wanted) for candidate in offered)


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, if that is what it holds."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None
