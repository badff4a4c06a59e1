"""Inputs a new user hands the CLI: named pipes, decompression bombs, refused weights files, float TIFFs, blank
folders, unreadable images among good ones. Each refusal is one line on stderr (third-party warnings never printed
beside it), nothing ever waits on a pipe, and `predict` says per file what failed, with an exit status to match.

The stderr checks run the console script in a fresh process (warnings print once per process, and to the real
stderr), each with a timeout: a command that blocks on a named pipe fails the test instead of hanging it.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import make_folder, train_args
from PIL import Image

from convscope.cli import main
from convscope.loaded import load_model
from convscope.run import load_run
from convscope.weights import save_weights

CASES = Path(__file__).resolve().parents[2] / "shared" / "cases" / "images"


def cli(*argv, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "convscope", *map(str, argv)], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = make_folder(tmp_path_factory.mktemp("images"), per_class=10)
    out = tmp_path_factory.mktemp("runs") / "inputs"
    assert main(train_args(folder, out, epochs=1)) == 0
    return out


@pytest.fixture
def inputs(tmp_path):
    """good.png (an ordinary image), pipe.png (a named pipe), bomb.png (90,000,000 pixels in 11 KB: Pillow's
    warning range, over its 89,478,485 limit and under twice it), notes.png (text)."""
    Image.new("L", (20, 20), 200).save(tmp_path / "good.png")
    os.mkfifo(tmp_path / "pipe.png")
    Image.new("1", (10_000, 9_000)).save(tmp_path / "bomb.png")
    (tmp_path / "notes.png").write_text("not a picture")
    return tmp_path


PIPE = "is a named pipe (FIFO), not a regular file; expected an image file (it was not opened)"


# ── B: third-party warnings never reach the user raw ────────────────────────────────────────────────────────────────
def test_a_decompression_bomb_is_one_line_on_stderr(inputs):
    done = cli("explain", "conv", "--image", inputs / "bomb.png")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [
        f"convscope: error: {inputs / 'bomb.png'}: refused, too many pixels for an image (Image size (90000000 "
        "pixels) exceeds limit of 89478485 pixels, could be decompression bomb DOS attack.)"
    ]


def test_a_bomb_in_a_training_folder_is_one_skip_line_not_a_warning(inputs, tmp_path):
    folder = make_folder(tmp_path / "images", per_class=10)
    shutil.copy(inputs / "bomb.png", folder / "dark" / "zz.png")  # decoded by a thread, among the others
    done = cli(*train_args(folder, tmp_path / "run", epochs=1))
    assert done.returncode == 0
    assert done.stderr.splitlines() == [
        f"skipped {folder / 'dark' / 'zz.png'}: refused, too many pixels for an image (Image size (90000000 pixels) "
        "exceeds limit of 89478485 pixels, could be decompression bomb DOS attack.)",
        f"{folder}: 1 unreadable file(s) left out",
    ]


def test_a_refused_weights_file_is_one_line_on_stderr(tmp_path):
    import pickle

    folder = make_folder(tmp_path / "images", per_class=10)
    weights = tmp_path / "base.pkl"
    weights.write_bytes(pickle.dumps({"w": 1}, protocol=5))  # torch warns "Detected pickle protocol 5", then refuses
    done = cli("transfer", "--weights", weights, "--data", folder, "--image-size", "32", "--out", tmp_path / "run")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"convscope: error: {weights}: cannot be read as a PyTorch state dict (damaged?): Unsupported operand 149"
    ]
    assert not (tmp_path / "run").exists()


# ── C + D: predict names each failed file once, on stderr; exit 0 / 1 / 2; a pipe is never waited on ───────────────
def test_predict_skips_a_pipe_and_a_bomb_and_predicts_the_good_image(run_dir, inputs):
    done = cli("predict", run_dir, inputs / "pipe.png", inputs / "bomb.png", inputs / "good.png", timeout=60)
    assert done.returncode == 1
    (line,) = done.stdout.splitlines()
    assert line.startswith(f"{inputs / 'good.png'} (L 20×20 → gray 28×28): ")
    assert done.stderr.splitlines() == [
        f"convscope: {inputs / 'pipe.png'}: {PIPE}",
        f"convscope: {inputs / 'bomb.png'}: refused, too many pixels for an image (Image size (90000000 pixels) "
        "exceeds limit of 89478485 pixels, could be decompression bomb DOS attack.)",
        "convscope: 2 of 3 images could not be read; the rest were predicted",
    ]


def test_predict_json_keeps_error_entries_on_stdout(run_dir, inputs, capsys):
    assert main(["predict", str(run_dir), str(inputs / "notes.png"), str(inputs / "good.png"), "--json"]) == 1
    out, err = capsys.readouterr()
    rows = json.loads(out)
    reason = "not an image in an allowed format (PNG, JPEG, BMP, GIF, TIFF, WEBP, PPM)"
    assert rows[0] == {"path": str(inputs / "notes.png"), "error": reason}
    assert rows[1]["path"] == str(inputs / "good.png") and len(rows[1]["top"]) == 2
    assert err.splitlines() == [
        f"convscope: {inputs / 'notes.png'}: {reason}",  # the path once
        "convscope: 1 of 2 images could not be read; the rest were predicted",
    ]


def test_predict_exit_status_is_0_when_all_are_read_and_2_when_none_are(run_dir, inputs, capsys):
    assert main(["predict", str(run_dir), str(inputs / "good.png")]) == 0
    assert capsys.readouterr().err == ""
    assert main(["predict", str(run_dir), str(inputs / "pipe.png"), str(inputs / "notes.png")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.splitlines()[-1] == "convscope: error: none of the 2 images could be read"
    assert len(err.splitlines()) == 3


def test_predict_help_documents_the_exit_status(capsys):
    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    assert "exit status: 0 every image predicted; 1 some images could not be read" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["summary", "{dir}/pipe.yaml"],
            "{dir}/pipe.yaml: is a named pipe (FIFO), not a regular file; expected a spec file (it was not opened)",
        ),
        (["explain", "conv", "--image", "{dir}/pipe.png"], "{dir}/pipe.png: " + PIPE),
    ],
)
def test_every_command_refuses_a_pipe_at_once(tmp_path, argv, message):
    os.mkfifo(tmp_path / "pipe.yaml")
    os.mkfifo(tmp_path / "pipe.png")
    done = cli(*[a.format(dir=tmp_path) for a in argv], timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"convscope: error: {message.format(dir=tmp_path)}"]


# ── A: float and 32-bit images keep their contrast; a blank training set is refused ──────────────────────────────
@pytest.mark.parametrize("name", ["float01.tif", "int32_8bitvals.tif"])
def test_float_and_int32_tiffs_are_not_predicted_as_black(run_dir, tmp_path, capsys, name):
    if not (CASES / name).is_file():
        pytest.skip(f"{CASES / name} is not on this machine")
    Image.new("L", (32, 32), 0).save(tmp_path / "black.png")
    assert main(["predict", str(run_dir), str(CASES / name), str(tmp_path / "black.png"), "--json"]) == 0
    case, black = json.loads(capsys.readouterr().out)
    assert case["conversion"] == ("F" if name.startswith("float") else "I") + " 32×32 → gray 28×28"
    assert abs(case["top"][0]["probability"] - black["top"][0]["probability"]) > 1e-3


def test_training_on_float_tiffs_standardises_by_their_real_values(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for label, name in enumerate(("dark", "light")):
        for i in range(10):
            values = (rng.random((20, 20)) * 0.5 + 0.4 * label).astype(np.float32)  # in 0–0.9: × 255
            path = tmp_path / "floats" / name / f"{i}.tif"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(values, mode="F").save(path)
    assert main(train_args(tmp_path / "floats", tmp_path / "run", epochs=1)) == 0
    data = load_run(tmp_path / "run").data
    assert 0.3 < data.mean[0] < 0.6 and 0.15 < data.std[0] < 0.35  # was mean 0, std 1e-6: every image black


def test_training_on_a_blank_folder_is_one_line_and_writes_nothing(tmp_path, capsys):
    for name in ("dark", "light"):
        for i in range(10):
            (tmp_path / "blank" / name).mkdir(parents=True, exist_ok=True)
            Image.new("L", (20, 20), 0).save(tmp_path / "blank" / name / f"{i}.png")
    assert main(train_args(tmp_path / "blank", tmp_path / "run", epochs=1)) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"convscope: error: {tmp_path / 'blank'}: all images have the same value (0 of 255 in every pixel): there "
        "is nothing to learn from; check that the images are not blank and decode as expected"
    ]
    assert not (tmp_path / "run").exists()


# ── E: files skipped while loading are recorded in the run folder ───────────────────────────────────────────────────
def test_skipped_files_are_recorded_in_results_json_and_train_log(tmp_path, capsys):
    folder = make_folder(tmp_path / "images", per_class=10)
    broken = folder / "dark" / "broken.png"
    broken.write_bytes((folder / "dark" / "000.png").read_bytes()[:100])
    assert main(train_args(folder, tmp_path / "run", epochs=1)) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["skipped_count"] == 1
    assert [f["path"] for f in results["skipped_files"]] == [str(broken)]
    assert results["skipped_files"][0]["reason"].startswith("damaged or truncated image")
    assert f"skipped {broken}: damaged or truncated image" in (tmp_path / "run" / "train.log").read_text()


# ── G: an all-zero Grad-CAM says so instead of pointing at row 0, column 0 ─────────────────────────────────────────
def test_gradcam_of_a_layer_that_is_all_zero_says_nothing_raises_the_class(run_dir, tmp_path, capsys):
    run = tmp_path / "zeroed"
    shutil.copytree(run_dir, run)
    model = load_model(load_run(run))
    with torch.no_grad():
        model.conv2.weight.zero_()
        model.conv2.bias.zero_()  # tanh(0) = 0 at every position of conv2
    save_weights(run / "weights" / "best.safetensors", model)
    Image.new("L", (28, 28), 120).save(tmp_path / "grey.png")
    argv = ["gradcam", str(run), str(tmp_path / "grey.png"), "--class", "light", "--out", str(tmp_path / "g.png")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "HiResCAM at layer conv2: nothing in layer conv2 raises the score of class light: the map is all zero" in out
    assert "strongest" not in out
