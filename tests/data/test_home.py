"""Where downloaded datasets live (convscope.data.home): CONVSCOPE_DATA_HOME, then XDG_DATA_HOME, then ~/.local/share;
a relative CONVSCOPE_DATA_HOME is refused in one line instead of meaning another folder in every working directory."""

from pathlib import Path

import pytest

from convscope.cli import main
from convscope.data.home import data_home, dataset_folder
from convscope.errors import ConfigError


def test_an_absolute_data_home_is_used_as_it_is(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVSCOPE_DATA_HOME", str(tmp_path / "home"))
    assert data_home() == tmp_path / "home"
    assert dataset_folder("cifar10") == tmp_path / "home" / "cifar10"


def test_without_it_xdg_data_home_then_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("CONVSCOPE_DATA_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert data_home() == tmp_path / "convscope" / "datasets"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert data_home() == Path.home() / ".local" / "share" / "convscope" / "datasets"


@pytest.mark.parametrize("value", ["data", "./datasets", "~/datasets"])
def test_a_relative_data_home_is_one_line_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("CONVSCOPE_DATA_HOME", value)
    with pytest.raises(ConfigError) as err:
        data_home()
    assert str(err.value) == (
        f"CONVSCOPE_DATA_HOME must be an absolute path (the folder of downloaded datasets). Received: {value!r}"
    )


def test_the_cli_says_it_in_one_line_and_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CONVSCOPE_DATA_HOME", "relative/home")
    monkeypatch.chdir(tmp_path)
    assert main(["data", "get", "cifar10"]) == 2
    assert capsys.readouterr().err == (
        "convscope: error: CONVSCOPE_DATA_HOME must be an absolute path (the folder of downloaded datasets). "
        "Received: 'relative/home'\n"
    )
    assert list(tmp_path.iterdir()) == []  # nothing made in the working directory
