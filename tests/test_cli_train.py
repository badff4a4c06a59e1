"""train / evaluate / predict from the command line, on a small synthetic image folder."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import make_folder, train_args
from PIL import Image

from convscope.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    folder = make_folder(tmp_path_factory.mktemp("images"))
    out = tmp_path_factory.mktemp("runs") / "cli"
    assert main(train_args(folder, out, epochs=2, batch_size=16)) == 0
    return out


def test_train_leaves_pictures_and_a_summary_line(run_dir, capsys):
    assert (run_dir / "curves.png").is_file() and (run_dir / "confusion.png").is_file()


def test_train_logs_a_clean_data_check(run_dir):
    lines = [line for line in (run_dir / "train.log").read_text().splitlines() if ": data check: " in line]
    assert len(lines) == 2 and " INFO convscope.train: data check: " in lines[0]
    assert lines[0].endswith("2 classes, 48 training images per class; no leaks, repeats or unreadable files found")


def test_train_says_in_one_line_that_test_images_leak_from_train(tmp_path, capsys):
    data = tmp_path / "data"
    make_folder(data / "train", per_class=20)
    make_folder(data / "test", per_class=3)  # the same seed: its 3 dark images are train/dark's first 3 (not light's)
    out = tmp_path / "run"
    assert main([*train_args(data, out, epochs=1, batch_size=16), "--val-fraction", "0"]) == 0
    shown = capsys.readouterr()
    found = (
        "data check: 40 train / 6 test images, 2 classes, 20 training images per class; 3 test images identical to "
        f"training images (a leak) — `convscope doctor {data}` looks deeper"
    )
    assert [line for line in (shown.out + shown.err).splitlines() if "data check" in line] == [found]
    assert f"WARNING convscope.train: {found}" in (out / "train.log").read_text()


def test_evaluate_json(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["classes"] == ["dark", "light"]
    assert sum(map(sum, data["confusion"])) == 12  # 10% of 120 images held out for testing
    assert data["accuracy"] == pytest.approx(np.trace(data["confusion"]) / 12)
    assert {row["class"] for row in data["per_class"]} == {"dark", "light"}


def test_predict_reports_unreadable_files_and_predicts_the_rest(run_dir, tmp_path, capsys):
    Image.new("RGB", (40, 30), (250, 250, 250)).save(tmp_path / "bright.png")
    noise = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "whole.png")
    (tmp_path / "broken.png").write_bytes((tmp_path / "whole.png").read_bytes()[:2000])  # cut off mid-stream
    (tmp_path / "notes.png").write_text("hello")
    assert main(["predict", str(run_dir), str(tmp_path), "--json", "--top-k", "2"]) == 1  # some could not be read
    rows = {Path(r["path"]).name: r for r in json.loads(capsys.readouterr().out)}
    assert rows["bright.png"]["conversion"] == "RGB 40×30 → gray 28×28"
    assert [t["class"] for t in rows["bright.png"]["top"]][0] == "light"
    assert sum(t["probability"] for t in rows["bright.png"]["top"]) == pytest.approx(1.0)
    assert "damaged or truncated" in rows["broken.png"]["error"]
    assert "not an image in an allowed format" in rows["notes.png"]["error"]


def test_predict_fails_when_nothing_is_readable(run_dir, tmp_path, capsys):
    (tmp_path / "notes.png").write_text("hello")
    assert main(["predict", str(run_dir), str(tmp_path / "notes.png")]) == 2
    assert "none of the 1 images could be read" in capsys.readouterr().err


def test_config_file_with_flags_on_top(tmp_path, capsys):
    config = tmp_path / "train.yaml"
    config.write_text("epochs: 0\nbatch_size: 16\n")
    assert main(["train", "--config", str(config)]) == 2
    assert "epochs must be a positive integer. Received: 0" in capsys.readouterr().err
    config.write_text("epochs: 1\nbatchsize: 16\n")
    assert main(["train", "--config", str(config)]) == 2
    assert "unknown setting 'batchsize'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--data", "no-such-folder"], "no-such-folder: not a built-in dataset"),
        (["train", "--model", "no-such-net"], "'no-such-net' is neither a spec file nor a preset"),
        (["train", "--augment", "rotate"], "augment: expected words like 'flip,translate=2,cutout=8'"),
        (["evaluate", "nowhere"], "nowhere: no such run folder"),
        (
            ["train", "--data", "cifar10"],
            "(expected the extracted cifar-10-binary.tar.gz); download it with `convscope data get cifar10`",
        ),
    ],
)
def test_train_errors_are_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "runs").exists()  # nothing written for a run that could not start


def test_early_stopping_after_patience_epochs_without_progress(tmp_path):
    from convscope.tasks.train import train

    folder = make_folder(tmp_path / "images", per_class=20)
    # A learning rate of ~0 cannot improve the validation accuracy: patience 1 stops after epoch 2.
    run = train(
        model="lenet5",
        data=str(folder),
        epochs=6,
        lr=1e-12,
        schedule="constant",
        patience=1,
        out=str(tmp_path / "run"),
        threads=1,
    )
    assert [r["epoch"] for r in run.metrics()] == [1, 2]
    assert run.results()["epochs"] == 2


def test_cifar_3conv_trains_on_binary_cifar10(tmp_path, capsys):
    sys.path.insert(0, str(Path(__file__).parent / "data"))
    from test_cifar import make_cifar10

    folder = make_cifar10(tmp_path / "cifar", per_batch=8)
    argv = [
        "train",
        "--model",
        "cifar-3conv",
        "--data",
        "cifar10",
        "--data-dir",
        str(folder),
        "--epochs",
        "1",
        "--batch-size",
        "8",
        "--threads",
        "1",
        "--out",
        str(tmp_path / "run"),
    ]
    assert main(argv) == 0
    assert "test accuracy" in capsys.readouterr().out
    assert (tmp_path / "run" / "weights" / "best.safetensors").is_file()


@pytest.mark.slow
def test_fashion_fast_reaches_91_percent(tmp_path):
    """The preset `make demo` trains: ≥ 91% Fashion-MNIST test accuracy (about 2.5 minutes on 2 cores)."""
    from convscope.tasks.train import train

    run = train(model="fashion-fast", data="fashion-mnist", out=str(tmp_path / "run"))
    assert run.results()["test_acc"] >= 0.91
