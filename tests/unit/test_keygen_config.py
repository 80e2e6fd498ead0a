"""``scaler_keygen -c FILE.toml`` reads a ``[keygen]`` section like every other command reads its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from scaler.cli import keygen


def test_keygen_reads_its_directory_from_a_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "scaler.toml"
    config.write_text(f'[keygen]\ndirectory = "{tmp_path / "keys"}"\n')
    keygen.main(["-c", str(config)])
    assert (tmp_path / "keys" / "scheduler.key_secret").is_file()
    assert "Wrote a new set of CURVE keys" in capsys.readouterr().out


def test_the_command_line_beats_the_file(tmp_path: Path) -> None:
    config = tmp_path / "scaler.toml"
    config.write_text(f'[keygen]\ndirectory = "{tmp_path / "from-file"}"\n')
    keygen.main(["-c", str(config), str(tmp_path / "from-flag")])
    assert (tmp_path / "from-flag" / "allowed_keys").is_file()
    assert not (tmp_path / "from-file").exists()


def test_a_misspelt_key_names_the_file_and_the_closest_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "scaler.toml"
    config.write_text('[keygen]\ndirectry = "keys"\n')
    with pytest.raises(SystemExit) as exited:
        keygen.main(["-c", str(config)])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert str(config) in error and "'directry'" in error and "did you mean 'directory'" in error
