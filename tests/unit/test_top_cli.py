"""scaler_top's command line: its flags and defaults, its [top] section, its keys, and the message without textual."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from scaler.cli import top as top_cli
from scaler.cli.common import parse_command
from scaler.cli.keygen import add_key, make_keys
from scaler.config.roles import role
from scaler.config.top import TopConfig

pytestmark = pytest.mark.timeout(20)


def test_help_shows_every_default_and_the_keys() -> None:
    text = " ".join(top_cli.build_parser().format_help().split())
    assert text.startswith("usage: scaler_top") and "MONITOR_ADDRESS" in text
    for shown in ("(default: 1)", "(default: 3)", "(default: name)", "--keys-dir DIR", "-c FILE.toml"):
        assert shown in text
    assert "q or Ctrl-C quits" in text and "u queued" in text and "t task" in text


def test_the_top_section_of_a_config_file_and_the_command_line_over_it(tmp_path: Path) -> None:
    assert role("top").config is TopConfig and role("top").module is None  # the launcher starts no monitor
    path = tmp_path / "scaler.toml"
    path.write_text('[top]\naddress = "tcp://127.0.0.1:8518"\nsort_by = "cpu"\nsilent_after_seconds = 5\n')
    parser = top_cli.build_parser()
    config, _ = parse_command(parser, TopConfig, "top", ["-c", str(path)])
    assert config == TopConfig(address="tcp://127.0.0.1:8518", sort_by="cpu", silent_after_seconds=5.0)
    config, _ = parse_command(parser, TopConfig, "top", ["-c", str(path), "--sort-by", "rss", "tcp://127.0.0.1:9"])
    assert (config.address, config.sort_by, config.silent_after_seconds) == ("tcp://127.0.0.1:9", "rss", 5.0)


def test_bad_settings_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (
        [],
        ["tcp://127.0.0.1:1", "--sort-by", "colour"],
        ["tcp://127.0.0.1:1", "--silent-after-seconds", "0"],
    ):
        with pytest.raises(SystemExit) as exited:
            top_cli.main(argv)
        assert exited.value.code == 2
    assert "address is missing" in capsys.readouterr().err


def test_keys_monitor_pair_else_the_client_pair(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    make_keys(keys_dir)
    for made in keys_dir.glob("monitor.key*"):  # a keys directory from before scaler_keygen made a monitor pair
        made.unlink()
    config = TopConfig(address="tcp://127.0.0.1:1", keys_dir=str(keys_dir))
    keys = top_cli.load_keys(config)
    assert keys is not None and keys.key_file.endswith("client.key_secret")
    add_key(keys_dir, "monitor")
    keys = top_cli.load_keys(config)
    assert keys is not None and keys.key_file.endswith("monitor.key_secret")
    assert keys.scheduler_key_file.endswith("scheduler.key")
    assert top_cli.load_keys(TopConfig(address="tcp://127.0.0.1:1")) is None


def test_without_textual_it_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in list(sys.modules):
        if name.partition(".")[0] == "textual" or name == "scaler.monitor.top":
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "textual", None)  # what an import finds when textual is not installed
    with pytest.raises(SystemExit) as exited:
        top_cli.main(["tcp://127.0.0.1:1"])
    assert exited.value.code == 1
    assert "pip install 'scaler[top]'" in capsys.readouterr().err


def test_the_launcher_accepts_a_top_section_and_starts_no_monitor(tmp_path: Path) -> None:
    from scaler.cli.launcher import plan

    path = tmp_path / "scaler.toml"
    path.write_text('[scheduler]\naddress = "tcp://127.0.0.1:8516"\n\n[top]\naddress = "tcp://127.0.0.1:8518"\n')
    assert [child.role.section for child in plan(str(path))] == ["scheduler"]
