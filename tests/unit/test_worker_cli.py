"""Worker flags: ``--per-worker-capabilities`` parsing, and how ``Cluster`` and the combo pass them on."""

from __future__ import annotations

import argparse

import psutil
import pytest

from scaler import SchedulerClusterCombo
from scaler.cli.worker import build_parser as worker_parser
from scaler.cluster.cluster import Cluster
from scaler.config.worker import format_capabilities, parse_capabilities


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gpu=1,fpga=2", {"gpu": 1, "fpga": 2}),
        (" gpu = 3 , ", {"gpu": 3}),
        ("gpu", {"gpu": 1}),
        ("", {}),
        ("a=0", {"a": 0}),
    ],
)
def test_parse_capabilities(text: str, expected: dict[str, int]) -> None:
    assert parse_capabilities(text) == expected
    assert parse_capabilities(format_capabilities(expected)) == expected


@pytest.mark.parametrize("text", ["=1", "gpu=x", "gpu=1.5", "gpu=-1"])
def test_parse_capabilities_rejects_bad_text(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_capabilities(text)


def test_worker_flags() -> None:
    args = worker_parser().parse_args(["tcp://127.0.0.1:1", "--per-worker-capabilities", "gpu=1,fpga=2"])
    assert args.per_worker_capabilities == {"gpu": 1, "fpga": 2}
    assert not hasattr(worker_parser().parse_args(["tcp://127.0.0.1:1"]), "per_worker_capabilities")


def test_cluster_passes_capabilities_to_each_worker() -> None:
    cluster = Cluster("tcp://127.0.0.1:1", 2, per_worker_capabilities={"gpu": 1, "fpga": 2})
    assert "--per-worker-capabilities=gpu=1,fpga=2" in cluster._command
    assert not any("capabilities" in part for part in Cluster("tcp://127.0.0.1:1", 1)._command)


@pytest.mark.parametrize("capabilities", [{"": 1}, {"a,b": 1}, {"a=b": 1}, {"gpu": -1}, {"gpu": 1.5}])
def test_cluster_rejects_bad_capabilities(capabilities: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="capability"):
        Cluster("tcp://127.0.0.1:1", 1, per_worker_capabilities=capabilities)


def test_combo_with_bad_capabilities_starts_nothing() -> None:
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    with pytest.raises(ValueError, match="capability"):
        SchedulerClusterCombo(n_workers=1, per_worker_capabilities={"gpu": -1})
    assert {child.pid for child in psutil.Process().children(recursive=True)} <= before
