"""The dashboard's bind rule, its command line, its config section and its place in `scaler CONFIG.toml`."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scaler.cli import launcher
from scaler.cli.ui import build_parser
from scaler.config.roles import load_config
from scaler.config.settings import ConfigError
from scaler.config.ui import UIConfig
from scaler.errors import InsecureBindError
from scaler.ui.security import bearer, check_ui_bind, is_loopback_host, token_matches


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.0.1", "localhost", "::1"])
def test_loopback_needs_nothing(host: str):
    address = f"[{host}]:8787" if ":" in host else f"{host}:8787"
    assert is_loopback_host(host)
    check_ui_bind(address, None, False)


@pytest.mark.parametrize("address", ["0.0.0.0:8787", "192.168.1.5:8787", "[::]:8787", "dashboard.example.com:80"])
def test_elsewhere_needs_a_token_or_insecure(address: str):
    with pytest.raises(InsecureBindError, match="--ui-token TOKEN.*--insecure"):
        check_ui_bind(address, None, False)
    check_ui_bind(address, "s3cret", False)
    check_ui_bind(address, None, True)


def test_token_matching():
    assert token_matches(None, None)
    assert token_matches("t", None, "t")
    assert not token_matches("t", None, "", "x")
    assert bearer("Bearer abc") == "abc" and bearer("Basic abc") is None and bearer(None) is None


def test_bad_settings_are_refused():
    for kwargs in ({"ui_address": "8787"}, {"ui_address": "host:99999"}, {"tasks_ring_size": 0}, {"ui_token": ""}):
        with pytest.raises(ValueError):
            UIConfig(**kwargs)


def test_help_shows_every_option_with_its_default():
    text = build_parser().format_help()
    for flag, default in (
        ("--ui-address", "127.0.0.1:8787"),
        ("--ui-token", "none"),
        ("--insecure", "false"),
        ("--tasks-ring-size", "100000"),
        ("--history-seconds", "600"),
        ("--feed-silent-seconds", "10"),
        ("--keys-dir", "none"),
    ):
        assert flag in text
        assert f"(default: {default})" in " ".join(text.split())


def run_ui(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "scaler.cli.ui", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.timeout(60)
def test_the_command_refuses_a_public_address_without_a_token():
    result = run_ui("tcp://127.0.0.1:1", "--ui-address", "0.0.0.0:8787")
    assert result.returncode == 2
    assert "refusing to serve the dashboard on 0.0.0.0:8787 without a token" in result.stderr


@pytest.mark.timeout(60)
def test_without_the_extra_it_says_what_to_install(tmp_path: Path):
    # A stand-in uvicorn that cannot be imported, as if the extra were not installed.
    (tmp_path / "uvicorn.py").write_text("raise ModuleNotFoundError(\"No module named 'uvicorn'\", name='uvicorn')\n")
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from scaler.cli.ui import main; main(sys.argv[1:])", "tcp://127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=30,
        env={**__import__("os").environ, "PYTHONPATH": f"{tmp_path}:{Path.cwd()}"},
    )
    assert result.returncode == 1
    assert "pip install 'scaler[ui]'" in result.stderr


def test_the_ui_section_of_a_config_file(tmp_path: Path):
    path = tmp_path / "cluster.toml"
    path.write_text(
        textwrap.dedent(
            """
            [scheduler]
            address = "tcp://127.0.0.1:8516"

            [ui]
            ui_address = "127.0.0.1:9000"
            tasks_ring_size = 500
            """
        )
    )
    config = load_config(UIConfig, "ui", str(path))
    assert isinstance(config, UIConfig)
    assert (config.ui_address, config.tasks_ring_size, config.address) == ("127.0.0.1:9000", 500, "")
    [scheduler, ui] = launcher.plan(str(path))
    assert ui.command[2] == "scaler.cli.ui" and ui.command[-1] == "tcp://127.0.0.1:8518"  # the port + 2
    assert scheduler.role.section == "scheduler"
    path.write_text(path.read_text().replace('8516"', '8516"\nmonitor_address = "tcp://127.0.0.1:9999"'))
    assert launcher.plan(str(path))[1].command[-1] == "tcp://127.0.0.1:9999"  # where [scheduler] publishes
    path.write_text(path.read_text().replace("tcp://127.0.0.1:9999", "none"))
    with pytest.raises(
        ConfigError, match=r"\[ui\] reads the scheduler's status feed, but \[scheduler\] publishes none"
    ):
        launcher.plan(str(path))
