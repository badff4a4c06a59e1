"""Live training: progress.json while an epoch runs, and the film strip of snapshots ("watch it learn"), bounded,
written by the trainer without changing what it trains (a resumed run stays bit-identical), read back by
run.filmstrip()."""

import json

import numpy as np
import pytest
from fault_harness import differences, outcome
from helpers import StopRequestAt, make_folder

import convscope
from convscope.config import TrainConfig
from convscope.errors import DataError, Interrupted
from convscope.run import FILMSTRIP, PROBE, PROGRESS, remove_unfinished
from convscope.signals import StopRequest
from convscope.tasks.train import train
from convscope.training import filmstrip, live
from convscope.training.filmstrip_show import read_snapshot, snapshot_epochs


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("images"), per_class=40)


def config(folder, out, **kw):
    settings = {"model": "lenet5", "data": str(folder), "epochs": 2, "batch_size": 16, "out": str(out), "threads": 1}
    return TrainConfig(**{**settings, "precision": "fp32", **kw})


@pytest.fixture(scope="module")
def straight(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "straight"
    train(config(folder, out), report=False)
    return out


def test_progress_json_is_written_during_and_at_the_end_of_each_epoch(folder, tmp_path, monkeypatch):
    written = []
    real = live.atomic_write_text

    def record(path, text):
        written.append(json.loads(text))
        real(path, text)

    monkeypatch.setattr(live, "atomic_write_text", record)
    monkeypatch.setattr(live, "EVERY", 0.0)  # every batch, so the test sees the batches' lines
    out = tmp_path / "run"
    run = train(config(folder, out), report=False)
    batches = 4  # 64 training images (80, less the validation and test shares), 16 a batch
    during = [w for w in written if w["stage"] == "training"]
    ends = [w for w in written if w["stage"] != "training"]
    assert [(w["epoch"], w["batch"]) for w in during] == [(e, b) for e in (1, 2) for b in range(1, batches + 1)]
    assert [(w["epoch"], w["stage"]) for w in ends] == [(1, "epoch done"), (2, "testing")]
    rows = run.metrics()
    for end, row in zip(ends, rows, strict=True):  # the epoch's running numbers end at its row's
        assert end["train_loss"] == pytest.approx(row["train_loss"], abs=1e-6)
        assert end["train_acc"] == pytest.approx(row["train_acc"], abs=1e-6)
        assert end["batch"] == end["batches"] == batches and end["eta_epoch_s"] == 0
    last_batch = during[batches - 1]  # the last batch of epoch 1: its running mean is the epoch's
    assert last_batch["train_loss"] == pytest.approx(rows[0]["train_loss"], abs=1e-6)
    first = during[0]
    assert first["epochs"] == 2 and first["phase"] == 1 and first["images_per_s"] > 0
    assert first["eta_epoch_s"] > 0 and first["eta_run_s"] > first["eta_epoch_s"]
    assert json.loads((out / PROGRESS).read_text()) == written[-1]


def test_progress_is_throttled_to_one_write_a_second(folder, tmp_path, monkeypatch):
    clock = iter(range(0, 10_000, 1))  # a clock that moves 1/4 s per reading
    monkeypatch.setattr(live.time, "monotonic", lambda: next(clock) / 4)
    writes = []
    monkeypatch.setattr(live, "atomic_write_text", lambda path, text: writes.append(json.loads(text)))
    progress = live.ProgressFile(tmp_path, epochs=1, batches=100)
    progress.epoch_started(0, 0)
    for b in range(1, 41):
        progress.batch(0, b, 16, 0.5 * 16 * b, 8 * b, 16 * b, 1)
    # each batch reads the clock once: 40 readings of 1/4 s after the start's are 10 s, one write a second
    assert [w["batch"] for w in writes] == list(range(4, 41, 4))
    assert writes[0]["train_loss"] == 0.5 and writes[0]["train_acc"] == 0.5
    assert writes[0]["images_per_s"] == 64.0 and writes[0]["eta_epoch_s"] == 24.0  # 4 batches a second, 96 to go


def test_a_film_strip_is_saved_for_every_epoch_with_the_probe_image(straight):
    assert snapshot_epochs(straight) == [0, 1, 2]
    assert (straight / FILMSTRIP / PROBE).is_file()
    snap = read_snapshot(straight, 2)
    assert snap.layers == ("conv1", "conv2") and snap.shapes == ((28, 28, 6), (10, 10, 16))
    assert snap.filters.shape == (6, 1, 5, 5) and snap.pixels["conv2"].shape == (16, 10, 10)
    untrained, trained = read_snapshot(straight, 0), snap
    assert not np.array_equal(untrained.filters, trained.filters)  # it learned
    run = convscope.load_run(straight)
    weights = run.loaded.model.get_submodule("conv1").weight.detach().numpy()
    assert np.array_equal(trained.filters, weights)  # weights/best is epoch 2's here (no EMA): the same numbers
    size = sum(p.stat().st_size for p in (straight / FILMSTRIP).iterdir())
    assert size < 40_000, size


def test_run_filmstrip_gives_the_arrays_stacked_by_epoch_and_pictures(straight):
    strip = convscope.load_run(straight).filmstrip()
    assert strip.epochs == (0, 1, 2) and strip.layers == ("conv1", "conv2")
    assert strip.filters.shape == (3, 6, 1, 5, 5) and strip.filters.dtype == np.float32
    assert strip.maps["conv1"].shape == (3, 6, 28, 28) and strip.maps["conv2"].shape == (3, 16, 10, 10)
    assert strip.shapes["conv2"] == (10, 10, 16) and strip.probe.shape == (28, 28, 1)
    snap = read_snapshot(straight, 1)  # the values come back within 1/255 of each map's range
    span = (snap.high["conv1"] - snap.low["conv1"]).max()
    assert np.abs(strip.maps["conv1"][1] - snap.values("conv1")).max() <= span / 255 + 1e-6
    assert strip._repr_png_().startswith(b"\x89PNG")
    assert len(strip.figure(epoch=1).axes) == 4  # probe, filters, conv1, conv2
    assert "3 snapshots, epochs 0–2" in repr(strip)
    with pytest.raises(DataError, match="epochs \\[0, 1, 2\\]"):
        strip.figure(epoch=7)


def test_a_run_without_a_film_strip_says_so(straight, tmp_path):
    import shutil

    shutil.copytree(straight, old := tmp_path / "old")
    shutil.rmtree(old / FILMSTRIP)
    with pytest.raises(DataError, match="has no film strip"):
        convscope.load_run(old).filmstrip()


def test_the_film_strip_stays_bounded(tmp_path):
    for epochs in (1, 10, 58, 59, 100, 1000, 12345):
        kept = [e for e in range(epochs + 1) if filmstrip.wanted(e, epochs)]
        assert kept[0] == 0 and kept[-1] == epochs and len(kept) <= filmstrip.MOST_SNAPSHOTS
    assert len([e for e in range(11) if filmstrip.wanted(e, 10)]) == 11  # a short run: every epoch


def test_a_stopped_run_resumes_bit_identically_with_its_film_strip(folder, straight, tmp_path):
    out, stop = tmp_path / "stopped", StopRequest()
    with pytest.raises(Interrupted):
        train(config(folder, out), report=False, stop=stop, callbacks=[StopRequestAt(stop, 1, 2)])
    assert snapshot_epochs(out) == [0, 1]
    train(resume=out, report=False)
    assert not (problems := differences(outcome(out), outcome(straight))), problems
    assert snapshot_epochs(out) == [0, 1, 2]
    for epoch in (0, 1, 2):  # the same snapshots as the straight run's
        a, b = read_snapshot(out, epoch), read_snapshot(straight, epoch)
        assert np.array_equal(a.filters, b.filters)
        assert all(np.array_equal(a.pixels[n], b.pixels[n]) for n in a.layers)


def test_an_extended_run_thins_its_earlier_snapshots(folder, tmp_path, monkeypatch):
    monkeypatch.setattr(filmstrip, "MOST_SNAPSHOTS", 4)  # stride: 3 epochs → every 2nd, 6 epochs → every 3rd
    out = tmp_path / "run"
    train(config(folder, out, epochs=3), report=False)
    assert snapshot_epochs(out) == [0, 2, 3]
    train(resume=out, epochs=6, report=False)
    assert snapshot_epochs(out) == [0, 3, 6]


def test_a_run_that_failed_before_its_first_checkpoint_leaves_no_film_strip(folder, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / FILMSTRIP).mkdir()
    for name in (PROBE, "epoch-0000.npz"):
        (out / FILMSTRIP / name).write_bytes(b"x")
    (out / PROGRESS).write_text("{}")
    (out / ".lock").write_text("")  # the training's lock, which it still holds
    remove_unfinished(out, made=True)
    assert not out.exists()


def test_a_detector_gets_a_film_strip_of_its_own_conv_layers(tmp_path):
    from convscope.data.detection.scenes import make_scenes
    from convscope.spec import NetSpec

    scenes = make_scenes(tmp_path / "scenes", 12, seed=1, size=64, min_side=10, max_side=28)
    spec = NetSpec.from_dict({"name": "tiny-det", "input": "64x64x3", "layers": [
        {"conv": {"filters": 8, "size": 3, "stride": 2, "padding": "same"}},
        {"conv": {"filters": 16, "size": 3, "stride": 2, "padding": "same"}},
        {"detect": {"classes": 10, "channels": 8}}]})  # fmt: skip
    (tmp_path / "det.yaml").write_text(spec.to_yaml())
    out = tmp_path / "boxes"
    train(model=str(tmp_path / "det.yaml"), data=str(scenes), epochs=1, batch_size=8, threads=1, out=str(out),
          report=False)  # fmt: skip
    snap = read_snapshot(out, 1)
    assert snap.layers == ("conv1", "conv2") and snap.shapes == ((32, 32, 8), (16, 16, 16))
    assert snap.filters.shape == (8, 3, 3, 3)
    progress = json.loads((out / PROGRESS).read_text())
    assert progress["train_acc"] is None and progress["stage"] == "testing"


def test_a_network_without_conv_layers_of_its_own_says_so_instead_of_a_missing_film_strip(folder, tmp_path):
    from convscope.spec import NetSpec

    spec = NetSpec.from_dict({"name": "dense-only", "input": "20x20x1", "layers": [
        {"flatten": {}}, {"dense": {"units": 2}}]})  # fmt: skip
    (tmp_path / "dense.yaml").write_text(spec.to_yaml())
    out = tmp_path / "dense"
    train(model=str(tmp_path / "dense.yaml"), data=str(folder), epochs=1, batch_size=16, threads=1, out=str(out),
          report=False)  # fmt: skip
    assert not (out / FILMSTRIP).exists()
    with pytest.raises(DataError, match=r"dense: has no film strip: its network has no conv layer of its own"):
        convscope.load_run(out).filmstrip()
