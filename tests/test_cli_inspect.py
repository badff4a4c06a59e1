"""featuremaps / filters / gradcam / top-activations / report from the command line, on a small trained run."""

from pathlib import Path

import pytest
from helpers import make_folder, train_args
from PIL import Image

from convscope.cli import main


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


def test_gradcam_for_a_chosen_class(run_dir, tmp_path, capsys):
    assert main(["gradcam", str(run_dir), "chelsea", "--class", "light", "--out", str(tmp_path / "g.png")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("light (probability ") and "at layer conv2" in out
    assert _is_png(tmp_path / "g.png")
    assert main(["gradcam", str(run_dir), "chelsea", "--class", "cat"]) == 2
    assert "no class named 'cat'" in capsys.readouterr().err
    # Without --out, each choice gets a file of its own: nothing is overwritten by a map of another class or method.
    assert main(["gradcam", str(run_dir), "chelsea"]) == 0
    assert (
        main(["gradcam", str(run_dir), "chelsea", "--class", "light", "--layer", "conv1", "--method", "gradcam"]) == 0
    )
    out = capsys.readouterr().out
    assert "HiResCAM at layer conv2" in out and "Grad-CAM at layer conv1" in out
    assert _is_png(run_dir / "gradcam-chelsea.png") and _is_png(run_dir / "gradcam-chelsea-light-conv1-gradcam.png")


def test_top_activations_scans_the_test_split(run_dir, tmp_path, capsys):
    argv = ["top-activations", str(run_dir), "--layer", "conv1", "--k", "3", "--filters", "0-2"]
    assert main([*argv, "--out", str(tmp_path / "t.png")]) == 0
    assert "conv1: 6 filters, 12 images scanned, receptive field 5×5" in capsys.readouterr().out
    assert _is_png(tmp_path / "t.png")


def test_report_is_one_self_contained_page(run_dir, capsys):
    assert main(["report", str(run_dir)]) == 0
    page = (run_dir / "report.html").read_text()
    for heading in ("Model", "Learning curves", "Test results", "Most confidently wrong", "Feature maps"):
        assert f"<h2>{heading}" in page
    assert 'src="http' not in page and 'href="http' not in page  # nothing fetched from outside: works offline
    assert page.count('src="data:image/png;base64,') >= 4
    assert (run_dir / "curves.png").is_file() and (run_dir / "featuremaps" / "01-conv1.png").is_file()
