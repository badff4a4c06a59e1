import json
import subprocess
import sys

import pytest

from convscope.cli import main


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_summary_of_the_tutorial_net_shows_keras_numbers(capsys):
    status, out, err = run(capsys, "summary", "cifar-3conv")
    assert status == 0 and err == ""
    for shape in ("30×30×32", "15×15×32", "13×13×64", "6×6×64", "4×4×64", "1024", "64", "10"):
        assert f" {shape} " in out
    assert "Total params: 122,570" in out
    assert "  5 conv3      ⌊(6 − 3)/1⌋ + 1 = 4" in out
    row = next(line for line in out.splitlines() if " conv2 " in line).split()
    assert row[:2] == ["3", "conv2"] and "13×13×64" in row and "18,496" in row and "3,115,008" in row


def test_summary_json_carries_the_same_numbers(capsys):
    status, out, _ = run(capsys, "summary", "cifar-3conv", "--json")
    data = json.loads(out)
    assert status == 0
    assert data["total_params"] == 122_570
    assert [row["output_shape"] for row in data["layers"]][:2] == [[30, 30, 32], [15, 15, 32]]
    assert data["layers"][0]["layer"] == {
        "conv": {"filters": 32, "size": 3, "stride": 1, "padding": "valid", "activation": "relu", "bias": True}
    }


def test_summary_of_a_spec_file_with_another_input(tmp_path, capsys):
    path = tmp_path / "net.yaml"
    path.write_text("name: tiny\ninput: 28x28x1\nlayers:\n  - conv: {filters: 4, padding: same}\n  - flatten\n")
    status, out, _ = run(capsys, "summary", str(path), "--input", "14x14x3")
    assert status == 0
    assert "14×14×4" in out and "784" in out and "Total params: 112" in out


def test_presets_lists_one_line_each(capsys):
    status, out, _ = run(capsys, "presets")
    lines = out.splitlines()
    assert status == 0
    assert lines[0].startswith("cifar-3conv") and "122,570 params" in lines[0]
    assert any(line.startswith("lenet5") and "61,706 params" in line for line in lines)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["summary", "nonet"], "'nonet' is neither a spec file nor a preset"),
        (["summary", "missing.yaml"], "missing.yaml: no such spec file"),
        (["summary", "cifar-3conv", "--input", "12x12x3"], "layer 5 (conv 3×3, stride 1, valid): input is 1×1×64"),
        (["summary", "cifar-3conv", "--input", "12x12"], "--input must be H×W×C"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    status, out, err = run(capsys, *argv)
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("convscope: error: ") and message in err


def test_console_script_has_no_traceback_on_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("input: 8x8x1\nlayers:\n  - conv: {filters: 0}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "convscope", "summary", str(bad)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"convscope: error: {bad}, line 3: layer 1 (conv): filters must be a positive integer. Received: 0"
    )
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["sumary"], "argument COMMAND: invalid choice: 'sumary'"),
        (["explain", "conv", "--kind", "median"], "argument --kind: invalid choice: 'median'"),
        (["summary"], "the following arguments are required: SPEC_FILE|PRESET"),
    ],
)
def test_usage_mistakes_are_one_line_too(capsys, argv, message):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert err.count("\n") == 1 and err.startswith("convscope: error: ") and message in err
