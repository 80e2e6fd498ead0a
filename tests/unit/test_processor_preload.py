"""What a worker's fork server imports before it forks processors (``processes._main_module_imports``).

Each child of the fork server runs the parent's main module again, so whatever that module
imports must already be in the fork server, or every new processor imports it all over again.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest

from scaler.worker.processes import _main_module_imports


def main_module(spec_name: str | None) -> types.ModuleType:
    module = types.ModuleType("__main__")
    module.__spec__ = importlib.util.find_spec(spec_name) if spec_name else None
    return module


def test_the_worker_commands_imports_are_preloaded_but_not_the_command_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    import scaler.worker.agent  # noqa: F401 - what ``python -m scaler.cli.worker`` has imported by then

    monkeypatch.setitem(sys.modules, "__main__", main_module("scaler.cli.worker"))
    preloaded = _main_module_imports()
    assert "scaler.worker.agent" in preloaded
    assert "scaler.cli.worker" not in preloaded  # run again by multiprocessing: runpy would warn
    assert all(name.startswith("scaler.") for name in preloaded)


@pytest.mark.parametrize("spec_name", [None, "json", "scaler.__main__"])
def test_a_main_module_that_is_not_a_scaler_command_preloads_nothing(
    monkeypatch: pytest.MonkeyPatch, spec_name: str | None
) -> None:
    # A user's script (no spec, or another package's) may do anything when imported.
    monkeypatch.setitem(sys.modules, "__main__", main_module(spec_name))
    assert _main_module_imports() == []


def test_a_worker_forked_by_the_boot_process_preloads_the_worker_modules_but_not_the_scheduler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import scaler.cli.scheduler  # noqa: F401 - what ``python -m scaler.cluster.boot`` has imported by then
    import scaler.worker.agent  # noqa: F401

    monkeypatch.setitem(sys.modules, "__main__", main_module("scaler.cluster.boot"))
    preloaded = _main_module_imports()
    assert "scaler.worker.agent" in preloaded and "scaler.worker.processor" in preloaded
    assert "scaler.cluster.boot" not in preloaded
    assert not [name for name in preloaded if name.startswith(("scaler.scheduler", "scaler.cli.scheduler"))]
