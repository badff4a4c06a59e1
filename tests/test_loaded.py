"""One loaded run: the network read once, images fitted as predict fits them, standardised exactly as before, and a
cache that keeps one per run folder until its weights change."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
import torch
from PIL import Image

from convscope.builder import build
from convscope.config import TrainConfig
from convscope.data.images import sample_photo
from convscope.errors import DataError
from convscope.loaded import FittedImage, LoadedRun, cached, load, upright
from convscope.preprocess import normalise, prepare, run_stats, to_tensor
from convscope.run import DataInfo, Run, load_run
from convscope.spec import NetSpec
from convscope.weights import save_weights

SPEC = {"name": "tiny", "input": "12x10x1", "layers": [{"conv": {"filters": 4, "size": 3}}, {"flatten": {}},
                                                        {"dense": {"units": 3}}]}  # fmt: skip


def save_run(folder, seed: int = 0):
    """A classifier's run folder (12×10×1 input, 3 classes) with seeded weights, as training leaves it."""
    spec = NetSpec.from_dict(SPEC)
    data = DataInfo("shapes", ("a", "b", "c"), (0.4,), (0.2,))
    run = Run(folder, TrainConfig(model="tiny", data="shapes"), spec, data)
    folder.mkdir(exist_ok=True)
    (folder / "spec.yaml").write_text(spec.to_yaml())
    (folder / "config.yaml").write_text(run.config_yaml())
    torch.manual_seed(seed)
    save_weights(folder / "weights" / "best.safetensors", build(spec, pretrained=False))
    return folder


@pytest.fixture
def loaded(tmp_path) -> LoadedRun:
    return load(save_run(tmp_path / "run"), device="cpu")


def test_the_network_is_loaded_once_in_eval_mode_with_the_runs_statistics(loaded):
    assert not loaded.model.training and loaded.device == torch.device("cpu")
    assert loaded.input == (12, 10, 1) and loaded.classes == ("a", "b", "c")
    mean, std = run_stats(loaded.run)
    assert torch.equal(loaded.mean, mean) and torch.equal(loaded.std, std) and loaded.mean.shape == (1, 1, 1, 1)
    assert load(loaded) is loaded  # a LoadedRun is used as it is
    assert "tiny 12×10×1, best weights on cpu" in repr(loaded)


def test_an_image_is_fitted_as_predict_fits_files_whatever_it_is_given_as(loaded):
    path = sample_photo("chelsea")
    expected, conversion = prepare(path, (12, 10, 1))
    by_name, by_path = loaded.fit("chelsea"), loaded.fit(path)
    assert np.array_equal(by_name.array, expected) and by_name.conversion == conversion == "RGB 451×300 → gray 10×12"
    assert by_name.name == "chelsea" and np.array_equal(by_path.array, expected)
    pil = loaded.fit(Image.open(path))
    assert pil.name == "PIL image" and np.array_equal(pil.array, expected)
    floats = loaded.fit(np.full((30, 20), 0.5))  # H×W, float 0–1
    assert floats.name == "array" and floats.conversion == "array 20×30 → gray 10×12" and (floats.array == 128).all()
    assert loaded.fit(by_name) is by_name and np.array_equal(loaded.image(path), expected)  # fitted: not again
    with pytest.raises(DataError, match="was fitted to 28×28×1; tiny takes 12×10×1"):
        loaded.fit(FittedImage(np.zeros((28, 28, 1), np.uint8), "", "a picture"))


def test_the_tensor_is_the_normalised_batch_on_the_device(loaded):
    images = np.random.default_rng(0).integers(0, 256, (5, 12, 10, 1), dtype=np.uint8)
    mean, std = run_stats(loaded.run)
    assert torch.equal(loaded.tensor(images), normalise(to_tensor(images), mean, std))
    one = loaded.tensor(images[2])
    assert one.shape == (1, 1, 12, 10) and torch.equal(one, loaded.tensor(images)[2:3])
    picture = loaded.fit("camera")
    assert torch.equal(loaded.tensor(picture), loaded.tensor(picture.array))


def test_the_cache_keeps_one_per_folder_until_its_weights_change(tmp_path):
    folder = save_run(tmp_path / "run", seed=0)
    first = cached(folder)
    assert cached(folder) is first and cached(str(folder / ".." / "run")) is first  # the same folder, resolved
    weights = folder / "weights" / "best.safetensors"
    before = weights.stat().st_mtime_ns
    save_run(folder, seed=1)  # a training replaced the best weights
    os.utime(weights, ns=(before + 10**9, before + 10**9))
    again = cached(folder)
    assert again is not first and cached(folder) is again
    assert not torch.equal(again.model.conv1.weight, first.model.conv1.weight)
    assert torch.equal(again.model.conv1.weight, load(load_run(folder), "cpu").model.conv1.weight)


def test_a_pil_image_is_turned_upright_by_its_exif_orientation():
    img = Image.new("L", (30, 20))
    assert upright(img) is img  # no tag: no copy
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: shown rotated by 90°
    out = io.BytesIO()
    img.save(out, "JPEG", exif=exif)
    assert upright(Image.open(out)).size == (20, 30)
