"""A preset's recipe (its own training settings) and precision 'auto'."""

import pytest
import torch
from helpers import make_folder

from convscope import build, device, train
from convscope.cli import main
from convscope.config import TrainConfig
from convscope.presets import get_preset, preset_recipe
from convscope.shapes import infer


def test_cifar_fast_pools_31_to_15_7_3_and_ends_in_one_score_per_class():
    report = infer(get_preset("cifar-fast"))
    sizes = [layer.output_shape[:2] for layer in report.layers if layer.output_shape and len(layer.output_shape) == 3]
    assert sizes[0] == (31, 31) and (15, 15) in sizes and (7, 7) in sizes and sizes[-1] == (3, 3)
    logits = build(get_preset("cifar-fast")).eval()(torch.zeros(2, 3, 32, 32))
    assert logits.shape == (2, 10)


def test_the_recipe_fills_only_the_settings_not_given(tmp_path):
    config = TrainConfig.from_dict({"model": "cifar-fast", "epochs": 3}, "flags")
    recipe = preset_recipe("cifar-fast")
    assert config.epochs == 3  # given wins
    assert (config.optimizer, config.batch_size, config.lr, config.precision) == (
        recipe["optimizer"],
        recipe["batch_size"],
        recipe["lr"],
        "auto",
    )
    file = tmp_path / "train.yaml"
    file.write_text("model: cifar-fast\nlr: 0.05\n")
    assert TrainConfig.load(file, batch_size=64).lr == 0.05 and TrainConfig.load(file).batch_size == 256
    # Another optimizer keeps the recipe's other settings, but its own default rate (SGD's 0.2 would wreck AdamW).
    adamw = TrainConfig.from_dict({"model": "cifar-fast", "optimizer": "adamw"})
    assert adamw.lr is None and adamw.learning_rate == 2e-3 and adamw.batch_size == 256
    assert "optimizer adamw (given; recipe sgd), lr 0.002 (adamw's default; the recipe's 0.2 is for sgd)," in (
        adamw.recipe_line()
    )
    assert TrainConfig.from_dict({"model": "cifar-fast", "optimizer": "adamw", "lr": 0.01}).lr == 0.01
    # Other models keep the plain defaults, and the recipe's values are the ones a run records.
    assert TrainConfig.from_dict({"model": "fashion-fast"}) == TrainConfig()
    assert config.recipe_line().startswith("cifar-fast trains with its recipe: epochs 3 (given; recipe 14), batch_size")
    assert TrainConfig().recipe_line() == ""


def test_train_with_settings_uses_the_recipe_and_the_cli_says_so(tmp_path, capsys):
    folder = make_folder(tmp_path / "images", per_class=100, size=32)  # 2% of 90 a class: 2 held out for validation
    run = train(
        model="cifar-fast", data=str(folder), epochs=1, batch_size=8, threads=1, out=str(tmp_path / "r"), report=False
    )
    assert run.config.optimizer == "sgd" and run.config.label_smoothing == 0.2 and run.config.val_fraction == 0.02
    log = (run.path / "train.log").read_text()
    assert "cifar-fast trains with its recipe: epochs 1 (given; recipe 14), batch_size 8 (given; recipe 256)" in log
    assert "threads and precision: 1 thread, " in log  # threads given; precision auto: fp32 unless bf16 measures faster
    argv = ["train", "--model", "cifar-fast", "--data", str(folder), "--epochs", "1", "--batch-size", "8"]
    assert main([*argv, "--threads", "1", "--out", str(tmp_path / "cli")]) == 0
    shown = capsys.readouterr().out
    assert (
        "cifar-fast trains with its recipe: epochs 1 (given; recipe 14)" in shown
        and "threads and precision: 1 thread" in shown
    )


@pytest.mark.parametrize(
    ("flags", "expected"),
    [("fpu avx512f avx512_bf16", True), ("fpu amx_tile amx_bf16", True), ("fpu avx512f avx512bw", False)],
)
def test_auto_precision_is_bf16_only_on_cpus_with_bf16_instructions(monkeypatch, tmp_path, flags, expected):
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    real_open = open
    monkeypatch.setattr(
        "builtins.open", lambda path, *a, **k: real_open(info if path == "/proc/cpuinfo" else path, *a, **k)
    )
    device.cpu_has_fast_bf16.cache_clear()
    try:
        cpu = torch.device("cpu")
        assert (device.autocast_dtype(cpu, "auto") == torch.bfloat16) is expected
        assert device.autocast_dtype(cpu, "bf16") == torch.bfloat16 and device.autocast_dtype(cpu, "fp32") is None
    finally:
        device.cpu_has_fast_bf16.cache_clear()


def test_auto_precision_is_fp32_where_cpuinfo_cannot_be_read(monkeypatch):
    def refuse(path, *args, **kwargs):
        raise FileNotFoundError(path)

    monkeypatch.setattr("builtins.open", refuse)
    device.cpu_has_fast_bf16.cache_clear()
    try:
        assert not device.cpu_has_fast_bf16()
    finally:
        device.cpu_has_fast_bf16.cache_clear()


def test_a_model_that_gives_every_image_one_class_is_called_out(caplog):
    from convscope.classify.evaluate import warn_if_one_class

    labels = torch.arange(100) % 10  # ten classes, 10 images each
    with caplog.at_level("WARNING", logger="convscope"):
        warn_if_one_class(torch.full((100,), 5), labels, tuple("abcdefghij"))
        warn_if_one_class(labels.clone(), labels, tuple("abcdefghij"))  # a model that learned: no warning
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith("the model predicts f for 100% of the test images (10% of them")


def test_detectors_get_the_detection_recipe_from_python_as_from_the_cli(tmp_path):
    from convscope.recipes import DETECTOR, RECIPES

    assert TrainConfig.from_dict({"model": "scenes-det"}).epochs == DETECTOR["epochs"] == 30
    scenes = TrainConfig.from_dict({"model": "scenes-det", "lr": 0.004})
    assert (scenes.lr, scenes.batch_size) == (0.004, 32)  # given wins
    assert TrainConfig.from_dict({"model": "lite0-det"}).finetune_epochs == RECIPES["lite0-det"]["finetune_epochs"]
    spec = tmp_path / "my-det.yaml"
    spec.write_text("input: 64x64x3\nlayers:\n  - conv: {filters: 8, size: 3, stride: 4}\n  - detect: {classes: 2}\n")
    mine = TrainConfig.from_dict({"model": str(spec)})
    assert (mine.epochs, mine.batch_size, mine.lr) == (30, 32, 0.008)
    assert mine.recipe_line() == f"{spec} trains with its recipe: epochs 30, batch_size 32, lr 0.008"
    # A classifier spec file, a broken one and a missing one keep the plain defaults (the last two fail when built).
    spec.write_text("input: 28x28x1\nlayers:\n  - flatten\n  - dense: {units: 10}\n")
    assert TrainConfig.from_dict({"model": str(spec)}) == TrainConfig(model=str(spec))
    spec.write_text("input: [")
    assert TrainConfig.from_dict({"model": str(spec)}).epochs == TrainConfig.epochs
    # AdamW given by name is the recipe's own optimizer: its rate stays.
    assert TrainConfig.from_dict({"model": "scenes-det", "optimizer": "adamw"}).lr == 0.008
