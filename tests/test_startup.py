"""The commands that need no network start without torch: importing torch takes seconds and most of a gigabyte, and
`convscope --help`, `summary`, `presets`, `explain` and every `--help` only parse, infer shapes and print.

Each check runs in a fresh interpreter (this test process has long imported torch). Timings are measured in bench/,
not asserted here; what is asserted is the cause: "torch" stays out of sys.modules.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields

import pytest

from convscope.config import TrainConfig

# Runs `body` (which may print) in the child, then reports what it printed, the status and whether torch was imported.
_CHILD = """
import contextlib, io, json, sys
out = io.StringIO()
status = None
with contextlib.redirect_stdout(out):
    try:
{body}
    except SystemExit as end:  # argparse's --help
        status = end.code
print(json.dumps({{"out": out.getvalue(), "status": status, "torch": "torch" in sys.modules}}))
"""


def in_fresh_python(*lines: str) -> dict:
    """{"out": what `lines` printed, "status": their `status` (or SystemExit's code), "torch": whether torch was
    imported}."""
    code = _CHILD.format(body="\n".join(" " * 8 + line for line in lines))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def run_cli(*argv: str) -> dict:
    return in_fresh_python("from convscope.cli import main", f"status = main({list(argv)!r})")


@pytest.mark.parametrize("module", ["convscope", "convscope.cli"])
def test_importing_the_package_or_the_cli_leaves_torch_out(module):
    assert in_fresh_python(f"import {module}")["torch"] is False


def test_building_the_whole_parser_leaves_torch_out():
    child = in_fresh_python("from convscope.cli import build_parser", "build_parser()")
    assert child["torch"] is False


def test_summary_starts_without_torch():
    child = run_cli("summary", "cifar-3conv")
    assert child["torch"] is False and child["status"] == 0
    assert "cifar-3conv" in child["out"] and "Total params: 122,570" in child["out"]
    row = next(line for line in child["out"].splitlines() if " conv2 " in line).split()
    assert row[:2] == ["3", "conv2"] and "13×13×64" in row and "18,496" in row


def test_presets_start_without_torch():
    child = run_cli("presets")
    lines = child["out"].splitlines()
    assert child["torch"] is False and child["status"] == 0
    assert lines[0].startswith("cifar-3conv") and "122,570 params" in lines[0]
    assert any(line.startswith("lenet5") and "61,706 params" in line for line in lines)


def test_explain_starts_without_torch():
    child = run_cli("explain", "conv")  # the sample photo, resized to 32×32, and the edge-x filter
    assert child["torch"] is False and child["status"] == 0
    assert "filter edge-x" in child["out"] and "output feature map: 30×30×1" in child["out"]
    child = run_cli("explain", "conv", "--array", "1 2 3; 4 5 6; 7 8 9", "--filter", "1 0; 0 -1")
    assert child["torch"] is False and child["status"] == 0
    # The centre output (row 1, column 1) reads the window 5 6; 8 9: 5·1 + 9·(−1) = −4, in a 2×2×1 output map.
    assert "output value -4" in child["out"] and "output feature map: 2×2×1" in child["out"]


def test_train_help_lists_every_setting_without_torch():
    child = run_cli("train", "--help")
    assert child["torch"] is False and child["status"] == 0
    flags = ["--config", "--resume"] + ["--" + f.name.replace("_", "-") for f in fields(TrainConfig)]
    missing = [flag for flag in flags if flag not in child["out"]]
    assert not missing, f"train --help lacks {missing}"


def test_every_commands_help_leaves_torch_out():
    """Every subcommand (and each `detect` and `data` subcommand) parses `--help` in one fresh interpreter: each
    help's usage line is printed, and no parser imports torch on the way."""
    child = in_fresh_python(
        "import argparse",
        "from convscope.cli import build_parser",
        "def commands(parser, words=()):",
        "    for action in parser._actions:",
        "        if isinstance(action, argparse._SubParsersAction):",
        "            for name, sub in action.choices.items():",
        "                yield (*words, name)",
        "                yield from commands(sub, (*words, name))",
        "status = []",
        "for words in commands(build_parser()):",
        "    try:",
        "        build_parser().parse_args([*words, '--help'])",
        "    except SystemExit as end:",
        "        status.append(end.code)",
    )
    assert child["torch"] is False
    usages = [line for line in child["out"].splitlines() if line.startswith("usage: convscope ")]
    for words in ("summary", "train", "evaluate", "featuremaps", "detect train", "export", "serve"):
        assert any(line.startswith(f"usage: convscope {words} ") for line in usages), words
    assert len(child["status"]) == len(usages) > 15 and set(child["status"]) == {0}
