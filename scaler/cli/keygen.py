"""``scaler_keygen DIR``: make a cluster's CURVE keys, and say which file goes to which host.

``scaler_keygen DIR`` writes the scheduler's, a client's, a worker's, a status-feed monitor's
and a worker manager's key pairs and the allow-list that holds the public keys of all but the
scheduler (the layout is described in
``scaler/io/keys.py``). ``scaler_keygen DIR --add NAME`` adds one more key pair, for another user
or another group of hosts, and puts its public key on the allow-list. Secret files are created
with mode 0600 and are never overwritten.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from scaler.cli.common import parse_command
from scaler.config.command_line import build_parser as build_config_parser
from scaler.config.keygen import KeygenConfig
from scaler.io.keys import (
    ALLOW_LIST,
    CLIENT,
    MANAGER,
    MONITOR,
    SCHEDULER,
    WORKER,
    PathLike,
    append_to_allow_list,
    check_key_name,
    create_key_pair,
    key_pair_path,
    public_key_path,
    read_public_key,
    write_allow_list,
)


def make_keys(directory: PathLike) -> str:
    """Write a new set of keys into ``directory`` (created 0700 if missing); return what to do next.

    Raises ``ValueError`` if ``directory`` already holds any of the files.
    """
    directory = Path(directory).absolute()
    names = (SCHEDULER, CLIENT, WORKER, MONITOR, MANAGER)
    wanted = [path(directory, name) for name in names for path in (public_key_path, key_pair_path)]
    wanted.append(directory / ALLOW_LIST)
    existing = [path.name for path in wanted if path.exists()]
    if existing:
        raise ValueError(
            f"{directory} already holds {', '.join(existing)}: nothing was changed. Use another directory for a "
            f"new set, or `scaler_keygen {directory} --add NAME` for one more key pair"
        )
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    public_files = {name: create_key_pair(directory, name)[0] for name in names}
    allowed = [(read_public_key(public_files[name], f"{name} public key"), name) for name in names[1:]]
    write_allow_list(directory / ALLOW_LIST, allowed)
    return _instructions(directory)


def add_key(directory: PathLike, name: str) -> str:
    """Add key pair ``name`` to an existing keys directory and its allow-list; return what to do next."""
    directory = Path(directory).absolute()
    check_key_name(name)
    if name == SCHEDULER:
        raise ValueError("'scheduler' names the scheduler's own key pair; pick another name")
    allow_list = directory / ALLOW_LIST
    if not allow_list.is_file():
        raise ValueError(f"{directory} holds no {ALLOW_LIST}: run `scaler_keygen {directory}` first")
    taken = [path.name for path in (public_key_path(directory, name), key_pair_path(directory, name)) if path.exists()]
    if taken:
        raise ValueError(f"{directory} already holds {', '.join(taken)}: pick another name")
    public_file, secret_file = create_key_pair(directory, name)
    append_to_allow_list(allow_list, read_public_key(public_file, f"{name} public key"), name)
    scheduler_key = public_key_path(directory, SCHEDULER)
    return (
        f"Wrote {secret_file} (secret, mode 0600) and {public_file}, and added {name}'s public key to {allow_list}.\n"
        f"Restart the scheduler to let {name} in. On {name}'s host, with {scheduler_key.name} beside the key pair:\n"
        f'  Client("tcp://SCHEDULER_HOST:PORT", key_file="{secret_file.name}", '
        f'scheduler_key_file="{scheduler_key.name}")\n'
        f"  scaler_cluster tcp://SCHEDULER_HOST:PORT --key-file {secret_file.name} "
        f"--scheduler-key-file {scheduler_key.name}\n"
    )


def _instructions(directory: Path) -> str:
    here = os.fspath(directory)
    return f"""Wrote a new set of CURVE keys to {here}:
  scheduler.key_secret  the scheduler's key pair (secret)  -> the scheduler host only
  {ALLOW_LIST:<20}  public keys the scheduler accepts  -> the scheduler host
  scheduler.key         the scheduler's public key         -> every worker and client host
  worker.key_secret     the workers' key pair (secret)     -> each worker host
  client.key_secret     a client's key pair (secret)       -> each client host
  monitor.key_secret    the status feed's readers (secret) -> where scaler_top / scaler_ui run
  manager.key_secret    worker managers' key pair (secret) -> where scaler_worker_manager runs

On one machine, point every process at the whole directory:
  scaler_scheduler tcp://0.0.0.0:8516 --keys-dir {here}
  scaler_cluster -n 4 tcp://SCHEDULER_HOST:8516 --keys-dir {here}
  Client("tcp://SCHEDULER_HOST:8516", keys_dir="{here}")

Across machines, copy to each host only the files it needs, into a directory of its own, and point
--keys-dir (keys_dir=) at that directory there:
  scheduler host: scheduler.key_secret {ALLOW_LIST}
  worker hosts:   worker.key_secret scheduler.key
  client hosts:   client.key_secret scheduler.key
  monitor hosts:  monitor.key_secret scheduler.key  (scaler_top, scaler_ui)
  manager hosts:  manager.key_secret worker.key_secret scheduler.key  (scaler_worker_manager)
Keep *.key_secret files private (mode 0600; `scp -p` keeps it), and never copy scheduler.key_secret
off the scheduler host. One more key pair (one per user, say): scaler_keygen {here} --add NAME
"""


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``scaler_keygen`` (no side effects)."""
    return build_config_parser(
        KeygenConfig,
        prog="scaler_keygen",
        description="Make CURVE keys for a scaler scheduler, its workers and its clients. Settings come from the "
        "flags, then the [keygen] section of -c FILE.toml.",
        epilog="Files: scheduler.key(_secret), client.key(_secret), worker.key(_secret), monitor.key(_secret), "
        "manager.key(_secret) and allowed_keys.",
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Make the keys and print where each file goes."""
    parser = build_parser()
    config, _ = parse_command(parser, KeygenConfig, "keygen", argv)
    if not config.directory:
        parser.error('the directory is missing: give it on the command line, or as directory = "..." in [keygen]')
    try:
        print(add_key(config.directory, config.add) if config.add else make_keys(config.directory), end="")
    except (ValueError, OSError) as error:
        parser.error(str(error))


if __name__ == "__main__":
    main()
