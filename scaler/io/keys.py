"""Key files on disk: CURVE key pairs and the scheduler's allow-list, as ``scaler_keygen`` writes them.

``scaler_keygen DIR`` writes the layout below; ``keys_dir=DIR`` (``--keys-dir DIR``) picks each
role's files from it by these names::

    DIR/scheduler.key          the scheduler's public key: copy it to every client and worker host
    DIR/scheduler.key_secret   the scheduler's key pair (mode 0600): keep it on the scheduler host only
    DIR/client.key_secret      a client's key pair (0600): copy it to each client host
    DIR/worker.key_secret      a worker's key pair (0600): copy it to each worker host; clients
                               created inside tasks use it too
    DIR/monitor.key_secret     a status feed reader's key pair (0600): scaler_top, scaler_ui, StatusFeed
                               (``PeerKeys.load("monitor", keys_dir=DIR)``)
    DIR/manager.key_secret     a worker manager's key pair (0600): scaler_worker_manager
    DIR/client.key, worker.key, monitor.key, manager.key  their public keys (already on the allow-list)
    DIR/allowed_keys           the allow-list: the public keys the scheduler accepts (scheduler host)

A ``.key`` file holds a public key, a ``.key_secret`` file a key pair, both in ZeroMQ's
certificate format (``zmq.auth.load_certificate`` reads them). The allow-list is text: one key
per line, as ``NAME KEY`` (a name for the scheduler's log, then the 40-character Z85 public key);
a line that starts with ``#`` is a comment. (The name comes first because Z85 uses ``#`` too.)
"""

from __future__ import annotations

import os
import re
import stat
import struct
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils import z85

SCHEDULER = "scheduler"
CLIENT = "client"
WORKER = "worker"
MONITOR = "monitor"  # status feed readers: scaler_top, scaler_ui, StatusFeed
MANAGER = "manager"  # worker managers: scaler_worker_manager, and an elastic SchedulerClusterCombo
PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
ALLOW_LIST = "allowed_keys"

_KEY_LENGTH = 40  # Z85 text of a 32-byte key
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_KEYGEN_HINT = "make a set with `scaler_keygen DIR`"

PathLike = str | os.PathLike[str]


def public_key_path(directory: PathLike, name: str) -> Path:
    """Where the keygen layout keeps ``name``'s public key."""
    return Path(directory) / f"{name}{PUBLIC_SUFFIX}"


def key_pair_path(directory: PathLike, name: str) -> Path:
    """Where the keygen layout keeps ``name``'s key pair."""
    return Path(directory) / f"{name}{SECRET_SUFFIX}"


def check_key_name(name: str) -> str:
    """Return ``name`` if it can name a key pair's files, else raise ``ValueError``."""
    if not _NAME.match(name):
        raise ValueError(f"bad key name {name!r}: use letters, digits, '_', '.' and '-'")
    return name


def is_z85_key(key: bytes) -> bool:
    """True for the 40-character Z85 text of a 32-byte CURVE key."""
    if len(key) != _KEY_LENGTH:
        return False
    try:
        return len(z85.decode(key)) == 32
    except (KeyError, ValueError, struct.error):
        return False


def create_key_pair(directory: PathLike, name: str) -> tuple[Path, Path]:
    """Write a new key pair as ``name.key`` (0644) and ``name.key_secret`` (0600); never overwrite.

    Returns the paths of the public file and of the key pair file.
    """
    check_key_name(name)
    public, secret = zmq.curve_keypair()
    public_path, secret_path = public_key_path(directory, name), key_pair_path(directory, name)
    _write_new(
        secret_path,
        _certificate(name, public, secret, "key pair: keep it secret (mode 0600) on the hosts of this role"),
        0o600,
    )
    _write_new(public_path, _certificate(name, public, None, "public key: safe to copy anywhere"), 0o644)
    return public_path, secret_path


def read_key_pair(path: PathLike, what: str) -> tuple[bytes, bytes]:
    """Read a ``.key_secret`` file: (public key, secret key), both Z85. ``what`` names it in errors."""
    public, secret = _read_certificate(path, what)
    if secret is None or not is_z85_key(secret):
        raise ValueError(f"{what} {path} holds no secret key: pass the .key_secret file, not the .key file")
    if zmq.curve_public(secret) != public:
        raise ValueError(f"{what} {path} is damaged: its public key does not match its secret key; {_KEYGEN_HINT}")
    return public, secret


def read_public_key(path: PathLike, what: str) -> bytes:
    """Read the public key (Z85) from a ``.key`` or ``.key_secret`` file."""
    return _read_certificate(path, what)[0]


def is_private(path: PathLike) -> bool:
    """False if the file can be read by its group or by others (a secret key should not be)."""
    return not os.stat(path).st_mode & (stat.S_IRWXG | stat.S_IRWXO)


def read_allow_list(path: PathLike) -> dict[bytes, str]:
    """Parse an allow-list file into ``{public key (Z85): name}``; raise ``ValueError`` naming a bad line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"no allow-list at {path}: {_KEYGEN_HINT}, which writes DIR/{ALLOW_LIST}") from None
    allowed: dict[bytes, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        key = fields[-1].encode("ascii", errors="replace")
        if len(fields) != 2 or not _NAME.match(fields[0]) or not is_z85_key(key):
            raise ValueError(
                f"{path}, line {number}: expected 'NAME KEY' (a name, then a 40-character public key), "
                f"got {line[:80]!r}"
            )
        allowed[key] = fields[0]
    return allowed


def allow_list_line(public_key: bytes, name: str) -> str:
    """One allow-list line for ``public_key``."""
    return f"{check_key_name(name)} {public_key.decode('ascii')}\n"


def write_allow_list(path: PathLike, entries: list[tuple[bytes, str]]) -> None:
    """Write a new allow-list (0644: it holds only public keys); never overwrite."""
    header = (
        "# scaler allow-list: the public keys of the clients and workers this scheduler accepts.\n"
        "# One per line: a name for the scheduler's log, then the public key (40 characters, from the\n"
        "# key pair's .key file). Add a line to let another key pair in (`scaler_keygen DIR --add NAME`\n"
        "# does it), delete one to shut it out; restart the scheduler to apply.\n"
    )
    _write_new(Path(path), header + "".join(allow_list_line(key, name) for key, name in entries), 0o644)


def append_to_allow_list(path: PathLike, public_key: bytes, name: str) -> None:
    """Add one key to an existing allow-list."""
    read_allow_list(path)  # refuse to extend a file that is not an allow-list
    text = Path(path).read_text(encoding="utf-8")
    with open(path, "a", encoding="utf-8") as allow_list:
        allow_list.write(("" if not text or text.endswith("\n") else "\n") + allow_list_line(public_key, name))


def _read_certificate(path: PathLike, what: str) -> tuple[bytes, bytes | None]:
    if not os.path.isfile(path):
        raise ValueError(f"no {what} at {path}: {_KEYGEN_HINT}, or copy the file from where it ran")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read {what} {path}: {error}") from None
    if not is_z85_key(public):
        raise ValueError(f"{what} {path} holds no valid public key; {_KEYGEN_HINT}")
    return public, secret


def _certificate(name: str, public: bytes, secret: bytes | None, role: str) -> str:
    lines = [
        f"#   scaler {name} {role}",
        "#   ZeroMQ CURVE certificate (ZPL format)",
        "",
        "metadata",
        f'    name = "{name}"',
        "curve",
        f'    public-key = "{public.decode("ascii")}"',
    ]
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode("ascii")}"')
    return "\n".join(lines) + "\n"


def _write_new(path: Path, text: str, mode: int) -> None:
    """Create ``path`` with ``mode`` from the start (no moment with wider permissions); fail if it exists."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        os.fchmod(file.fileno(), mode)  # the umask may have narrowed it; it never widens past mode
        file.write(text)
