"""Refused before anything is allocated or written, in one line with exit status 2: hostile YAML, specs that need
absurd memory (summary marks them; train, detect train and transfer refuse them), and numeric flags out of range."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import make_folder
from PIL import Image

from convscope import cli, memory
from convscope.cli import main

CASES = (Path(__file__).resolve().parents[1] / "../shared/cases/specs").resolve()
needs_cases = pytest.mark.skipif(not CASES.is_dir(), reason=f"{CASES} (the shared case files) is not here")
GIB = 2**30


def run(capsys, *argv) -> tuple[int, str, str]:
    try:
        status = main([str(a) for a in argv])
    except SystemExit as stop:  # argparse's usage errors
        status = stop.code
    out, err = capsys.readouterr()
    return status, out, err


def refused(capsys, *argv) -> str:
    """The one line a refused command prints (checked: exit 2, nothing on stdout, no traceback, short)."""
    status, out, err = run(capsys, *argv)
    assert status == 2 and out.strip() == "", (status, out, err[:500])  # the progress bar may end a line
    assert err.count("\n") == 1 and err.startswith("convscope: error: ") and len(err) < 600, err[:500]
    return err.strip()


@pytest.fixture
def folder(tmp_path):
    return make_folder(tmp_path / "images", per_class=10, size=12)


@needs_cases
@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("deepnest", "deepnest.yaml, line 3: refused: YAML/JSON nested more than 100 levels deep"),
        ("laughs_layers", "laughs_layers.yaml, line 3: refused: YAML/JSON with more than 100,000 values once its"),
        ("hugefilters", "conv1 would have 10,000,000,000 parameters (37.3 GiB of float32), more than the 2,147,48"),
        ("hugesize", "conv1's window of 99,999,999,999,999,999,999 rows is far larger than the input's 28: with"),
    ],
)
def test_summary_refuses_the_case_specs_in_one_line(capsys, case, message):
    err = refused(capsys, "summary", CASES / f"{case}.yaml")
    assert err.startswith(f"convscope: error: {CASES / case}.yaml") and message in err
    assert "\n" not in err.strip() and len(err.replace(str(CASES), "")) < 300  # the folder's own path not counted


@needs_cases
def test_summary_marks_a_network_this_machine_cannot_train_and_exits_0(capsys, monkeypatch):
    monkeypatch.setattr(cli, "available_memory", lambda: 21 * GIB)
    status, out, err = run(capsys, "summary", CASES / "bigact.yaml")
    assert status == 0 and err == ""
    assert "Total params: 4,000,010" in out
    assert (
        "Training memory at batch size 128 (float32, at least): 74.9 GiB (61.0 MiB of weights, gradients and "
        "optimizer state + 598.9 MiB of activations per image × 128)"
    ) in out
    assert (
        "WARNING: huge needs 74.9 GiB to train at batch size 128, this machine has 21.0 GiB available: `convscope "
        "train` would refuse it (the largest batch size that fits is 35); layer 1 (conv1: conv 3×3, stride 1, same) "
        "needs the most\n"
    ) in out
    monkeypatch.setattr(cli, "available_memory", lambda: 1024 * GIB)
    status, out, err = run(capsys, "summary", CASES / "bigact.yaml", "--json")
    assert status == 0 and err == "" and '"training_bytes": 80448406688' in out


@needs_cases
def test_train_refuses_the_case_specs_and_writes_nothing(capsys, tmp_path, folder, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(memory, "available_memory", lambda: 21 * GIB)
    for case, message in (
        ("hugefilters", "layer 1 (conv 3×3, stride 1, same): conv1 would have 10,000,000,000 parameters (37.3 GiB"),
        ("hugesize", "layer 1 (conv 99999999999999999999×99999999999999999999, stride 1, same): conv1's window"),
        (
            "bigact",
            "huge: training at batch size 128 needs 74.9 GiB (36.6 MiB of weights, gradients and optimizer",
        ),  # 2 classes
    ):
        out = tmp_path / f"run-{case}"
        err = refused(capsys, "train", "--model", CASES / f"{case}.yaml", "--data", folder, "--out", out)
        assert message in err
        assert not out.exists()
    assert not (tmp_path / "runs").exists()
    err = refused(capsys, "train", "--model", CASES / "bigact.yaml", "--data", folder, "--batch-size", 64, "--out", out)
    assert "at batch size 64 needs 37.5 GiB" in err and "21.0 GiB available" in err and "fits is 35" in err


def test_transfer_reaches_the_same_check(capsys, tmp_path, folder, monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda: 10 * 2**20)  # 10 MiB: less than the base alone
    out = tmp_path / "transfer"
    err = refused(capsys, "transfer", "--data", folder, "--image-size", 64, "--out", out, "--threads", 1)
    assert "efficientnet-lite0-transfer: training at batch size 32 needs" in err and "10.0 MiB available" in err
    assert "not even one image fits" in err
    assert not out.exists()


def _yolo(root: Path) -> Path:
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (64, 64), (40 * i, 90, 200)).save(root / "images" / split / f"{i}.png")
            (root / "labels" / split / f"{i}.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    (root / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [thing]\n")
    return root


def test_detect_train_reaches_the_same_check(capsys, tmp_path, monkeypatch):
    spec = tmp_path / "det.yaml"
    spec.write_text(
        "name: det\ninput: 64x64x3\nlayers:\n  - conv: {filters: 8, size: 3, stride: 4, padding: same}\n"
        "  - detect: {classes: 1, channels: 8}\n"
    )
    monkeypatch.setattr(memory, "available_memory", lambda: 2**20)
    out = tmp_path / "det-run"
    err = refused(capsys, "detect", "train", "--data", _yolo(tmp_path / "yolo"), "--model", spec, "--out", out)
    assert "det: training at batch size 32 needs" in err and "1.0 MiB available" in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--seed", "-1"], "seed must be an integer from 0 to 2**32 - 1. Received: -1"),
        (["--seed", str(10**22)], "seed must be an integer from 0 to 2**32 - 1. Received: 10000000000000000000000"),
        (["--lr", "nan"], "lr must be a finite positive number. Received: nan"),
        (["--lr", "inf"], "lr must be a finite positive number. Received: inf"),
        (["--weight-decay", "inf"], "weight_decay must be a number in [0, 1]. Received: inf"),
        (["--label-smoothing", "nan"], "label_smoothing must be a number in [0, 1). Received: nan"),
        (["--val-fraction=-inf"], "val_fraction must be a number in [0, 0.9]. Received: -inf"),
        (["--epochs", str(10**9)], "epochs must be at most 100,000. Received: 1000000000"),
        (["--batch-size", str(2**21)], "batch_size must be at most 1,048,576. Received: 2097152"),
        (["--threads", "5000"], "threads must be at most 1,024. Received: 5000"),
        (["--patience", "0"], "patience must be a positive integer. Received: 0"),
        (["--per-class", str(2**40)], "per_class must be at most 2,147,483,648. Received: 1099511627776"),
    ],
)
def test_train_flags_out_of_range_are_one_line(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert message in refused(capsys, "train", *argv, "--out", tmp_path / "run")
    assert not (tmp_path / "run").exists() and not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["detect", "train", "--data", "d", "--seed", "-1"], "seed must be an integer from 0 to 2**32 - 1"),
        (["detect", "train", "--data", "d", "--lr", "nan"], "lr must be a finite positive number. Received: nan"),
        (["transfer", "--seed", str(10**22)], "seed must be an integer from 0 to 2**32 - 1"),
        (["transfer", "--head-epochs", "0"], "epochs must be a positive integer. Received: 0"),
        (["transfer", "--unfreeze-blocks", "5000"], "unfreeze_blocks must be at most 1,000. Received: 5000"),
        (["transfer", "--image-size", str(10**9)], "image_size must be at most 4096. Received: 1000000000"),
        (["detect", "make-scenes", "--out", "o", "--seed", "-1"], "argument --seed: expected an integer in [0, 4,29"),
        (["detect", "make-scenes", "--out", "o", "--size", str(10**9)], "argument --size: expected an integer in [16"),
        (["detect", "make-scenes", "--out", "o", "--n", "0"], "argument --n: expected an integer in [1, 10,000,000]"),
        (
            ["detect", "predict", "r", "i.png", "--min-score", "nan"],
            "argument --min-score: expected a number in [0, 1]",
        ),
        (["predict", "r", "i.png", "--top-k", "0"], "argument --top-k: expected an integer in [1, 100,000]. Rece"),
        (["predict", "r", "i.png", "--top-k", "9" * 5000], "argument --top-k: expected an integer. Received: '999"),
        (["top-activations", "r", "--layer", "c", "--k", "-3"], "argument --k: expected an integer in [1, 10,000]"),
        (["explain", "pool", "--resize", "99999x99999"], "--resize must be an integer in [1, 1024] or H×W like 3x5"),
        (["explain", "conv", "--padding", "20000"], "--padding must be valid, same, an integer in [0, 1024] or H×W"),
        (["summary", "lenet5", "--input", "100000x100000x3"], "--input: 100000×100000×3 is 30,000,000,000 values"),
    ],
)
def test_other_numeric_flags_out_of_range_are_one_line(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    assert message in refused(capsys, *argv)
    assert list(tmp_path.iterdir()) == []  # nothing written
