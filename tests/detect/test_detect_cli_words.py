"""The words of `convscope detect`: every DATA / --data / --data-dir help names the same layouts (one constant each),
and `detect lint --json` on a dataset it cannot read still prints JSON on stdout: {"error": the one-line message}."""

from __future__ import annotations

import json

import pytest

from convscope.cli import main
from convscope.cli_detect import DATA_DIR_HELP, DATA_LAYOUTS


def _help(capsys, *command: str) -> str:
    with pytest.raises(SystemExit):
        main(["detect", *command, "-h"])
    return " ".join(capsys.readouterr().out.split())  # argparse's wrapping undone


@pytest.mark.parametrize("command", ["lint", "convert", "train", "evaluate"])
def test_every_data_help_names_the_same_layouts(command, capsys):
    text = _help(capsys, command)
    assert " ".join(DATA_LAYOUTS.split()) in text and " ".join(DATA_DIR_HELP.split()) in text
    assert "TF Object Detection .csv" in DATA_LAYOUTS and "split folders (train/ valid/ test/)" in DATA_LAYOUTS
    assert "TF .csv" in DATA_DIR_HELP


def test_lint_json_on_an_unreadable_dataset_prints_the_error_as_json(tmp_path, capsys):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "data.yaml").write_text("names: [a, b\n")  # bad YAML
    assert main(["detect", "lint", str(tmp_path / "ds"), "--json"]) == 2
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert list(doc) == ["error"] and str(tmp_path / "ds") in doc["error"] and "\n" not in doc["error"]
    assert captured.err == f"convscope: error: {doc['error']}\n"
    assert main(["detect", "lint", str(tmp_path / "ds")]) == 2  # without --json: stderr only, as before
    assert capsys.readouterr().out == ""
