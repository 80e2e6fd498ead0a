"""``scaler_bench``, run as a real command: its JSON, its --help, and that it leaves no process behind."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import descendants, wait_no_descendants

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]


def command() -> list[str]:
    """The installed console script; ``python -m scaler.bench`` (the same ``main``) where it is not installed."""
    script = shutil.which("scaler_bench")
    return [script] if script is not None else [sys.executable, "-m", "scaler.bench"]


def test_the_console_script_is_declared() -> None:
    with (ROOT / "pyproject.toml").open("rb") as file:
        project = tomllib.load(file)["project"]
    assert project["scripts"]["scaler_bench"] == "scaler.cli.bench:main"
    assert any(requirement.startswith("matplotlib") for requirement in project["optional-dependencies"]["bench"])


def test_help_lists_every_option_with_its_default() -> None:
    result = subprocess.run([*command(), "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    for flag in ("--workers", "--rounds", "--quick", "--only", "--json", "--scale-workers", "--scale-tasks", "--plot"):
        assert flag in text
    assert text.count("(default:") >= 10


def test_a_bad_flag_is_a_usage_error() -> None:
    result = subprocess.run([*command(), "--only", "nothing"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "--only" in result.stderr


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_quick_json_has_numbers_for_scaler_and_the_process_pool() -> None:
    before = descendants()
    argv = [*command(), "--quick", "--json", "--only", "noop,latency", "--peers", "scaler,ppe", "--tasks", "200"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=110)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)  # stdout holds the JSON only; progress went to stderr
    assert "noop" in result.stderr and "latency" in result.stderr
    assert report["version"] == 1
    assert report["peers"] == ["scaler", "ppe"]
    assert report["settings"]["workers"] == 2 and report["settings"]["rounds"] == 1
    assert [row["id"] for row in report["rows"]] == ["noop", "latency_p50", "latency_p99"]
    for row in report["rows"]:
        assert {"title", "unit", "values", "ratio", "goal", "passed"} <= set(row)
        for peer in ("scaler", "ppe"):
            value = row["values"][peer]
            assert value["error"] is None
            assert isinstance(value["median"], float) and value["median"] > 0
            assert len(value["runs"]) == 1
        assert row["ratio"] == pytest.approx(row["values"]["scaler"]["median"] / row["values"]["ppe"]["median"])
    assert report["leftover_processes"] == []
    assert wait_no_descendants(before) == set()
