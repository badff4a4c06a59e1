"""Settings chosen from the data (convscope.detect.data_recipe): the input size from the box sizes, the epochs from
the number of images, given settings winning, the choice recorded in config.yaml and kept on resume; and the
validation split held out of train when a dataset has none (data.detection.load.with_val_split)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import convscope.detect.data_recipe as data_recipe
from convscope.config import TrainConfig
from convscope.data.detection.load import load_detection
from convscope.detect.data_recipe import BoxStats, choose_epochs, choose_size, chosen_size, fitted_config
from convscope.detect.task import DetectTask
from convscope.errors import ConfigError
from convscope.presets import get_preset
from convscope.run import load_run
from convscope.spec import NetSpec
from convscope.tasks.train import train

LITE0 = get_preset("lite0-det")  # a pretrained base cut at stride 16: 16 px at least, not below 256
SCENES = get_preset("scenes-det")  # from scratch: 3 output cells (12 px) at least
TINY = {"input": "64x64x3", "layers": [{"conv": {"filters": 4, "size": 3, "stride": 2, "padding": "same"}},
                                       {"conv": {"filters": 4, "size": 3, "stride": 2, "padding": "same"}},
                                       {"detect": {"classes": 1, "channels": 4}}]}  # fmt: skip


def _stats(smallest: float, longer_side: int = 640, images: int = 200) -> BoxStats:
    return BoxStats(images, images, smallest, "cell", longer_side)


# --- the input size ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "smallest, spec, size",
    [
        (0.185, LITE0, 256),  # BCCD's white cells alone: 47 px at 256, a pretrained base goes no lower
        (0.047, LITE0, 416),  # BCCD's platelets: 15 px at 320 is under the base's 16-px cell, 20 px at 416
        (0.030, LITE0, 640),  # 16 / 0.03 = 533 px wanted: the next size up
        (0.010, LITE0, 640),  # tiny: 1,600 px wanted, 640 is the largest chosen (and the photos' own size)
        (0.30, SCENES, 128),  # from scratch, large: the smallest size
        (0.05, SCENES, 256),  # 12 / 0.05 = 240 px wanted
    ],
)
def test_large_objects_get_a_small_input_and_tiny_ones_a_large_one(smallest, spec, size):
    assert choose_size(_stats(smallest), spec) == size


def test_the_input_is_not_made_larger_than_the_photos_themselves():
    assert choose_size(_stats(0.05, longer_side=128), SCENES) == 128  # 240 wanted, the canvases are 128 px
    assert choose_size(_stats(0.05, longer_side=300), SCENES) == 256  # 240 wanted, within the photos' 320
    assert choose_size(_stats(0.01, longer_side=200), LITE0) == 256  # a base's floor, even for small photos
    assert choose_size(_stats(0.0), LITE0) == 416  # no boxes to measure: the model's own size


@pytest.mark.parametrize(
    "images, size, epochs",
    [
        (205, 416, (12, 36)),  # BCCD: its measured recipe
        (205, 256, (13, 40)),  # 95 wanted at a 0.38× step cost: capped at 40
        (1000, 416, (4, 10)),  # 7 wanted: at least 10 fine-tuning epochs
        (600, 320, (7, 21)),  # 7400 × (416/320)² / 600 = 20.8
    ],
)
def test_fewer_images_get_more_epochs_within_bounds(images, size, epochs):
    assert choose_epochs(images, size)[:2] == epochs


# --- given settings win ----------------------------------------------------------------------------------------------
def test_the_recipe_chooses_only_what_is_not_given():
    assert TrainConfig.from_dict({"model": "lite0-det"}).chosen_keys() == ("image_size", "epochs", "finetune_epochs")
    given = TrainConfig.from_dict({"model": "lite0-det", "epochs": 12, "image_size": 320})
    assert given.chosen_keys() == ()  # a given value equal to the recipe's still wins
    # one phase's length given (`--epochs 1` for a quick look): the other is the recipe's, not 40 from the data
    short = TrainConfig.from_dict({"model": "lite0-det", "epochs": 1})
    assert (short.chosen_keys(), short.epochs, short.finetune_epochs) == (("image_size",), 1, 36)
    assert TrainConfig.from_dict({"model": "lite0-det", "finetune_epochs": 0}).chosen_keys() == ("image_size",)
    assert TrainConfig.from_dict({"model": "scenes-det"}).chosen_keys() == ("image_size",)
    assert TrainConfig.from_dict({"model": "lite0-det", "from_data": "none"}).chosen_keys() == ()
    assert TrainConfig.from_dict({"model": "fashion-fast"}).chosen_keys() == ()
    with pytest.raises(ConfigError, match="from_data: expected names of image_size, epochs, finetune_epochs"):
        TrainConfig(from_data="image_size,lr")


def test_a_given_image_size_is_used_without_reading_the_data(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the data was read to choose a size that was given")

    monkeypatch.setattr(data_recipe, "raw_box_stats", refuse)
    config = TrainConfig.from_dict({"model": "lite0-det", "data": "nowhere", "image_size": 320})
    assert chosen_size(config, LITE0) == 320
    assert chosen_size(TrainConfig.from_dict({"model": "lite0-det", "from_data": "none"}), LITE0) == 416


# --- small folders written here ---------------------------------------------------------------------------------------
def _yolo(root: Path, splits: dict[str, int], box: float = 0.5, width: int = 96, height: int = 72) -> Path:
    """A one-class YOLO folder: `splits[name]` images of width×height per split, each with one centred box whose
    sides are `box` of the image's."""
    split_lines = [f"{name}: images/{name}" for name in splits]
    root.mkdir(parents=True)
    (root / "data.yaml").write_text("\n".join([*split_lines, "names: [cell]"]) + "\n")
    rng = np.random.default_rng(0)
    for name, count in splits.items():
        (root / "images" / name).mkdir(parents=True)
        (root / "labels" / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "images" / name / f"{name}{i:03d}.png")
            (root / "labels" / name / f"{name}{i:03d}.txt").write_text(f"0 0.5 0.5 {box} {box}\n")
    return root


def test_a_set_without_a_val_split_gets_one_held_out_of_train_seeded(tmp_path, caplog):
    root = _yolo(tmp_path / "ds", {"train": 20, "test": 4})
    with caplog.at_level(logging.INFO, logger="convscope.detect"):
        data = load_detection(str(root), None, 32, 0.1, seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (18, 2, 4)
    assert not set(data.train.names) & set(data.val.names)
    assert len(set(data.train.names) | set(data.val.names)) == 20
    assert "no val split: 2 of 20 training images held out for validation (seed 0)" in caplog.text
    again = load_detection(str(root), None, 32, 0.1, seed=0)
    assert again.val.names == data.val.names  # the same seed holds out the same images
    other = [load_detection(str(root), None, 32, 0.25, seed=s).val.names for s in (1, 2)]
    assert len(other[0]) == 5 and other[0] != other[1]  # a quarter of 20; another seed, other images


def test_without_a_test_split_the_score_is_said_to_be_on_val(tmp_path, caplog):
    root = _yolo(tmp_path / "ds", {"train": 10})
    with caplog.at_level(logging.INFO, logger="convscope.detect"):
        data = load_detection(str(root), None, 32, 0.1, seed=0)
    assert (len(data.train), len(data.val), data.test) == (9, 1, None)
    assert "no test split: the test score will be on the 1 validation image(s)" in caplog.text


def test_the_choice_is_made_from_the_data_and_worded_in_the_recipe_line(tmp_path):
    root = _yolo(tmp_path / "ds", {"train": 10, "val": 2}, box=0.2, width=400, height=300)
    config = TrainConfig.from_dict({"model": "lite0-det", "data": str(root)})
    assert chosen_size(config, LITE0) == 256  # boxes 80×60 px in 400×300 photos: 15% of the longer side
    data = DetectTask.load_data(config, LITE0)
    spec = DetectTask.fit_spec(LITE0, data)
    assert spec.input == (256, 256, 3) and data.train.images.shape[1:] == (256, 256, 3)
    fitted = fitted_config(config, spec, data)
    assert (fitted.image_size, fitted.epochs, fitted.finetune_epochs) == (256, 13, 40)
    line = fitted.recipe_line()
    assert "image_size 256 (chosen from the data)" in line and "epochs 13 (chosen from the data; recipe 12)" in line
    assert "Chosen from the training data: input 256×256: the smallest common box (cell, 10th percentile" in line
    assert "15.0% of the image's longer side, 38 px at 256" in line and "13 + 40 epochs for 10 training" in line


def test_the_choice_is_recorded_in_config_yaml_and_kept_on_resume(tmp_path, monkeypatch):
    root = _yolo(tmp_path / "ds", {"train": 12, "val": 3}, box=0.5)
    spec_file = tmp_path / "tiny-det.yaml"
    spec_file.write_text(NetSpec.from_dict({"name": "tiny-det", **TINY}).to_yaml())
    out = tmp_path / "run"
    settings = dict(model=str(spec_file), data=str(root), epochs=1, batch_size=4, threads=1, out=str(out))
    run = train(**settings, from_data="image_size", report=False)
    assert run.spec.input == (128, 128, 3)  # 64 asked by the spec file; 96×72 photos of large boxes: 128
    recorded = load_run(out)
    assert recorded.config.image_size == 128 and recorded.config.chosen_keys() == ("image_size",)
    assert recorded.config.from_data.startswith("image_size: input 128×128: the smallest common box (cell")
    assert "input: 128x128x3" in (out / "config.yaml").read_text()

    def refuse(*args, **kwargs):
        raise AssertionError("a resumed run chose its input size again")

    monkeypatch.setattr(data_recipe, "raw_box_stats", refuse)
    resumed = train(resume=str(out), epochs=2, report=False)
    assert resumed.config.image_size == 128 and load_run(out).results()["epochs"] == 2


def test_a_classifier_refuses_an_image_size(tmp_path):
    from convscope.cli import main

    out = tmp_path / "run"
    args = ["train", "--model", "fashion-fast", "--data", "fashion-mnist", "--image-size", "64", "--out", str(out)]
    assert main(args) == 2
    assert not out.exists()  # refused before the run folder is claimed
