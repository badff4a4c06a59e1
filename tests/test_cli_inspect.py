"""featuremaps / filters / gradcam / top-activations / report from the command line, on a small trained run."""

import sys
from pathlib import Path

import pytest
from PIL import Image

from convscope.cli import main

sys.path.insert(0, str(Path(__file__).parent / "training"))
from test_loop import make_folder, train_args  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = make_folder(tmp_path_factory.mktemp("images"))
    out = tmp_path_factory.mktemp("runs") / "inspect"
    assert main(train_args(folder, out, epochs=2, batch_size=16)) == 0
    return out


def _is_png(path: Path) -> bool:
    with Image.open(path) as img:
        return img.format == "PNG" and min(img.size) > 200


def test_featuremaps_writes_one_sheet_per_conv_and_pool_layer(run_dir, tmp_path, capsys):
    assert main(["featuremaps", str(run_dir), "chelsea", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == "input 28×28×1 (RGB 451×300 → gray 28×28)"
    sheets = sorted(p.name for p in tmp_path.glob("*.png"))
    assert sheets == ["01-conv1.png", "02-pool1.png", "03-conv2.png", "04-pool2.png"]
    assert all(_is_png(tmp_path / name) for name in sheets)
    assert "conv2" in out and "10×10×16" in out


def test_filters_of_a_named_layer(run_dir, tmp_path, capsys):
    assert main(["filters", str(run_dir), "--layer", "conv2", "--out", str(tmp_path / "f.png")]) == 0
    assert "conv2: 16 filters 5×5×6" in capsys.readouterr().out
    assert _is_png(tmp_path / "f.png")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["featuremaps", "{run}", "chelsea", "--layer", "conv9"], "conv9"),
        (["filters", "{run}", "--layer", "pool1"], "pool1"),
        (["featuremaps", "{run}", "no-such.png"], "no-such.png: no such image file"),
    ],
)
def test_inspect_errors_are_one_line(run_dir, argv, message, capsys):
    assert main([a.format(run=run_dir) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
