"""The status feed of a scheduler with keys: a ``monitor`` key on the allow-list reads it, nobody else does."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from scaler import Client
from scaler.cli.keygen import make_keys
from scaler.io.security import PeerKeys
from scaler.io.sockets import free_tcp_address
from scaler.monitor.feed import StatusFeed
from scaler.protocol.messages import StatusSnapshot
from tests.security.test_curve import start_scheduler, stop

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


def copy(target: Path, source: Path, *names: str) -> Path:
    target.mkdir(parents=True)
    for name in names:
        shutil.copy2(source / name, target / name)
    return target


def snapshots(feed: StatusFeed, seconds: float) -> list[StatusSnapshot]:
    received = []
    for _ in range(int(seconds / 0.1)):
        received += [message for message in feed.receive(0.1) if isinstance(message, StatusSnapshot)]
        if len(received) >= 2:
            break
    return received


def test_only_an_allowed_monitor_key_reads_the_feed(tmp_path: Path) -> None:
    ours, other = tmp_path / "ours", tmp_path / "other"
    make_keys(ours)
    make_keys(other)
    scheduler_host = copy(tmp_path / "scheduler-host", ours, "scheduler.key_secret", "allowed_keys")
    monitor_host = copy(tmp_path / "monitor-host", ours, "monitor.key_secret", "scheduler.key")
    address, monitor = free_tcp_address(), free_tcp_address()
    scheduler = start_scheduler(
        address, "--keys-dir", str(scheduler_host), "--monitor-address", monitor, "--status-interval-seconds", "0.2"
    )
    try:
        allowed = PeerKeys.load("monitor", keys_dir=monitor_host)
        # Another set's monitor key pair, with our scheduler's public key: a stranger to the allow-list.
        stranger = PeerKeys.load(
            "monitor", key_file=other / "monitor.key_secret", scheduler_key_file=ours / "scheduler.key"
        )
        with (
            StatusFeed(monitor, keys=allowed) as allowed_feed,
            StatusFeed(monitor, keys=stranger) as stranger_feed,
            StatusFeed(monitor) as keyless_feed,
        ):
            received = snapshots(allowed_feed, 30)
            assert received, "the allowed monitor key never got a snapshot"
            with Client(address, keys_dir=copy(tmp_path / "client-host", ours, "client.key_secret", "scheduler.key")):
                received = snapshots(allowed_feed, 30)
                assert received and len(received[-1].clients) == 1
            assert snapshots(stranger_feed, 2) == [] and not stranger_feed.heard_any
            assert snapshots(keyless_feed, 1) == [] and not keyless_feed.heard_any
    finally:
        stop(scheduler)
