"""The Scaler import names that docs/coming-from-scaler.md says work here."""

from __future__ import annotations

import concurrent.futures
import importlib

import pytest

import scaler

WORKING = [
    ("scaler", "Client"),
    ("scaler", "ScalerFuture"),
    ("scaler", "SchedulerClusterCombo"),
    ("scaler", "Cluster"),
    ("scaler", "Serializer"),
    ("scaler", "__version__"),
    ("scaler.client.client", "Client"),
    ("scaler.client.client", "ScalerFuture"),
    ("scaler.client.future", "ScalerFuture"),
    ("scaler.client.object_reference", "ObjectReference"),
    ("scaler.cluster.combo", "SchedulerClusterCombo"),
    ("scaler.cluster.cluster", "Cluster"),
]


@pytest.mark.parametrize(("module", "name"), WORKING, ids=lambda value: value)
def test_a_scaler_import_works_and_names_the_public_object(module: str, name: str) -> None:
    value = getattr(importlib.import_module(module), name)
    assert value is getattr(scaler, name, value)  # the same object as the top-level name, where there is one


def test_scaler_future_is_a_standard_future() -> None:
    assert issubclass(scaler.ScalerFuture, concurrent.futures.Future)
