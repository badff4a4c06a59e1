"""Training end to end on a small synthetic image folder: the run folder, crash safety, exact resume."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import make_folder, train_args, wait_for
from safetensors.torch import load_file

from convscope.config import TrainConfig
from convscope.errors import TrainingError
from convscope.loaded import load_model
from convscope.run import load_run
from convscope.tasks.train import train


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("images"))


def small(folder, out, **kw):
    settings = {"model": "lenet5", "data": str(folder), "epochs": 3, "batch_size": 16, "out": str(out), "threads": 1}
    return TrainConfig(**{**settings, **kw})


def test_a_run_folder_has_everything(folder, tmp_path):
    run = train(small(folder, tmp_path / "run"))
    names = {p.name for p in run.path.iterdir()}
    expected = {
        "config.yaml",
        "spec.yaml",
        "metrics.csv",
        "weights",
        "checkpoint.safetensors",
        "train.log",
        "results.json",
    }
    assert expected | {"report.html", "curves.png", "confusion.png", "featuremaps"} <= names
    assert {p.name for p in (run.path / "weights").iterdir()} == {"best.safetensors", "last.safetensors"}
    rows = run.metrics()
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[-1]["val_acc"] >= 0.9 and rows[-1]["train_loss"] < rows[0]["train_loss"]
    again = load_run(run.path)
    assert again.config == run.config and again.spec == run.spec and again.data.classes == ("dark", "light")
    assert again.spec.input == (28, 28, 1)  # lenet5's own input: the folder's images were resized to it
    model = load_model(again)
    assert sum(p.numel() for p in model.parameters()) == 61_706 - (84 + 1) * 8  # 10-class head resized to 2
    assert again.spec.layers[-1].units == 2
    assert run.results()["test_acc"] >= 0.9
    assert "epoch 3/3" in (run.path / "train.log").read_text()


def test_an_existing_run_is_never_overwritten(folder, tmp_path):
    train(small(folder, tmp_path / "run", epochs=1), report=False)
    with pytest.raises(Exception, match="already holds a run"):
        train(small(folder, tmp_path / "run", epochs=1), report=False)


def test_a_non_finite_loss_stops_with_the_step_and_keeps_best(folder, tmp_path):
    with pytest.raises(TrainingError, match=r"the loss became (nan|inf) at epoch \d+, batch \d+ \(step \d+\)"):
        train(small(folder, tmp_path / "run", lr=1e12, optimizer="sgd", schedule="constant", epochs=4))
    best = tmp_path / "run" / "weights" / "best.safetensors"
    if best.exists():  # written only at the end of a finished epoch, and then only with finite weights
        assert all(torch.isfinite(t).all() for t in load_file(best).values())


def _cli(*args, **kw):
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.Popen(
        [sys.executable, "-m", "convscope", *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kw,
    )


def _same_weights(a: Path, b: Path) -> bool:
    x, y = load_file(a), load_file(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = make_folder(tmp_path_factory.mktemp("big"), per_class=400)
    out = tmp_path_factory.mktemp("runs") / "straight"
    proc = _cli(*train_args(folder, out, epochs=4))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return folder, out


def test_sigkill_then_resume_gives_exactly_the_uninterrupted_run(uninterrupted, tmp_path):
    folder, straight = uninterrupted
    out = tmp_path / "killed"
    proc = _cli(*train_args(folder, out, epochs=4))
    wait_for(lambda: (out / "metrics.csv").exists() and len((out / "metrics.csv").read_text().splitlines()) >= 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert len((out / "metrics.csv").read_text().splitlines()) < 5  # it really died before the end
    resumed = _cli("train", "--resume", str(out))
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert _metrics_equal(out, straight)
    assert _same_weights(out / "weights" / "last.safetensors", straight / "weights" / "last.safetensors")
    assert _same_weights(out / "weights" / "best.safetensors", straight / "weights" / "best.safetensors")


def _metrics_equal(a: Path, b: Path) -> bool:
    """All columns but the wall-clock seconds are identical."""

    def rows(p):
        lines = (p / "metrics.csv").read_text().splitlines()
        return [line.rsplit(",", 1)[0] for line in lines]

    return rows(a) == rows(b)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_sigint_and_sigterm_save_mid_epoch_and_resume_exactly(uninterrupted, tmp_path, sig, code):
    folder, straight = uninterrupted
    out = tmp_path / "stopped"
    proc = _cli(*train_args(folder, out, epochs=4))
    wait_for(lambda: (out / "metrics.csv").exists(), proc)
    time.sleep(0.3)  # into the second epoch
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code
    assert f"convscope train --resume {out}" in err and "Traceback" not in err
    said = [line for line in (out / "train.log").read_text().splitlines() if f"stopped by {sig.name} at" in line]
    assert len(said) == 1 and said[0].endswith(f"; saved. Resume with: convscope train --resume {out}")
    resumed = _cli("train", "--resume", str(out))
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert _metrics_equal(out, straight)
    assert _same_weights(out / "weights" / "last.safetensors", straight / "weights" / "last.safetensors")


def test_test_time_flips_average_an_image_and_its_mirror_image(folder, tmp_path):
    from convscope.classify.evaluate import evaluate
    from convscope.loaded import load_predictor
    from convscope.preprocess import predict_logits, run_stats, to_tensor

    run = train(small(folder, tmp_path / "run", epochs=1, augment="flip"), report=False)
    assert run.config.flips_at_test()  # the default follows the training flips
    x = to_tensor(evaluate(run).images)
    mean, std = run_stats(run)
    plain, mirrored = (predict_logits(load_model(run), images, mean, std) for images in (x, x.flip(3)))
    both = predict_logits(load_predictor(run), x, mean, std)
    assert torch.allclose(both, (plain + mirrored) / 2, atol=1e-5)
    assert not torch.allclose(plain, mirrored, atol=1e-3)  # the two views really differ
    assert evaluate(run).accuracy == pytest.approx(run.results()["test_acc"])  # the trainer's test pass uses it too

    off = train(small(folder, tmp_path / "off", epochs=1, augment="flip", tta_flip=False), report=False)
    assert not off.config.flips_at_test()
    assert torch.allclose(
        predict_logits(load_predictor(off), x, mean, std), predict_logits(load_model(off), x, mean, std)
    )
    assert not small(folder, tmp_path / "none", augment="none").flips_at_test()


def test_bf16_precision_trains_with_float32_weights(folder, tmp_path):
    run = train(small(folder, tmp_path / "run", epochs=2, precision="bf16"), report=False)
    rows = run.metrics()
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] and run.results()["test_acc"] >= 0.9
    weights = load_file(run.weights / "best.safetensors")
    assert {t.dtype for t in weights.values()} <= {torch.float32, torch.int64}  # autocast leaves the weights fp32
    with pytest.raises(Exception, match="precision must be one of fp32, bf16, auto"):
        TrainConfig(precision="fp16")


def test_the_best_checkpoint_breaks_accuracy_ties_by_the_lower_validation_loss():
    from types import SimpleNamespace

    from convscope.tasks import ClassifyTask

    trainer = SimpleNamespace(val=(None, torch.zeros(200)))  # 200 validation images: accuracy moves in steps of 0.005

    def score(acc, loss):
        return ClassifyTask.score(trainer, {"val_acc": acc, "val_loss": loss})

    assert score(0.99, 0.0565) < score(0.99, 0.0351)  # the same accuracy, a lower loss: better
    assert score(0.99, 0.0) < score(0.995, 1e6)  # one more right answer beats any loss
    assert ClassifyTask.score(SimpleNamespace(val=None), {"train_acc": 0.7}) == 0.7
