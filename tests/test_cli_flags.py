"""The training flags come from TrainConfig's field metadata (cli_args.add_config_flags): every setting has a flag on
`convscope train`, the values given reach the config, and a bad value is one line with exit status 2."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from convscope.cli import build_parser, main
from convscope.cli_args import add_config_flags, config_settings
from convscope.config import TrainConfig
from convscope.training.checkpoints import CHANGEABLE


class Captured(Exception):
    """Raised by the stand-in for training: carries what the command would have trained with."""


@pytest.fixture
def captured(monkeypatch):
    """Training replaced by a stand-in that records its arguments and stops the command (nothing is trained)."""

    def fake_train(config=None, **kwargs):
        raise Captured(config, kwargs)

    monkeypatch.setattr("convscope.tasks.train.train", fake_train)


def _command(*names: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in names:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


def _parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_every_described_setting_has_a_flag_on_train():
    described = [f for f in dataclasses.fields(TrainConfig) if "help" in f.metadata]
    assert [f.name for f in described] == [f.name for f in dataclasses.fields(TrainConfig)]  # all of them
    train = _command("train")
    flags = {s for action in train._actions for s in action.option_strings}
    text = train.format_help()
    for field in described:
        flag = "--" + field.name.replace("_", "-")
        assert flag in flags and flag in text, flag


def test_flags_keep_their_kinds():
    assert config_settings(_parse("train")) == {}  # nothing given: the file, the recipe or the defaults decide
    args = _parse("train", "--epochs", "3", "--lr", "0.01", "--optimizer", "sgd", "--no-tta-flip", "--cache-features")
    assert config_settings(args) == {
        "epochs": 3,
        "lr": 0.01,
        "optimizer": "sgd",
        "tta_flip": False,
        "cache_features": True,
    }
    assert config_settings(_parse("train", "--tta-flip")) == {"tta_flip": True}
    with pytest.raises(SystemExit):  # argparse's choices
        _parse("train", "--precision", "fp16")


@pytest.mark.parametrize(
    "argv",
    [
        ["train"],
        ["transfer"],
        ["detect", "train", "--data", "d"],
    ],
)
def test_device_and_cache_limit_are_settings_of_every_training_command(argv):
    settings = config_settings(_parse(*argv, "--device", "cpu", "--cache-limit", "1GiB"))
    assert settings["device"] == "cpu" and settings["cache_limit"] == "1GiB"


def test_transfer_names_its_epochs_head_epochs():
    assert config_settings(_parse("transfer", "--head-epochs", "3", "--unfreeze-blocks", "2")) == {
        "epochs": 3,
        "unfreeze_blocks": 2,
    }
    with pytest.raises(SystemExit):
        _parse("transfer", "--epochs", "3")


def test_the_flags_a_resume_accepts_are_settings():
    args = _parse("train", "--resume", "r", "--epochs", "9", "--threads", "2", "--device", "cpu", "--cache-limit", "0")
    assert set(config_settings(args)) == set(CHANGEABLE)


def test_train_builds_its_config_from_the_flags(captured):
    with pytest.raises(Captured) as got:
        main(["train", "--device", "cpu", "--cache-limit", "1GiB", "--epochs", "2", "--threads", "1"])
    config = got.value.args[0]
    assert isinstance(config, TrainConfig)
    assert (config.device, config.cache_limit, config.epochs, config.threads) == ("cpu", "1GiB", 2, 1)


def test_detect_train_builds_its_config_from_the_flags(captured):
    with pytest.raises(Captured) as got:
        main(["detect", "train", "--data", "d", "--device", "cpu", "--cache-limit", "500MB", "--val-every", "2"])
    config = got.value.args[0]
    assert (config.model, config.device, config.cache_limit, config.val_every) == ("scenes-det", "cpu", "500MB", 2)


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--device", "gpu"],
        ["detect", "train", "--data", "d", "--device", "gpu"],
        ["transfer", "--device", "gpu", "--image-size", "64"],
    ],
)
def test_a_bad_device_is_one_line_naming_the_devices(capsys, tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)  # refused before anything is written (checked below)
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert (
        err.startswith("convscope: error: ") and "device must be auto, cpu, cuda, cuda:N or mps. Received: 'gpu'" in err
    )
    assert list(tmp_path.iterdir()) == []


def test_a_bad_cache_limit_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--cache-limit", "lots"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cache_limit must be a size such as 6GiB, 500MB or 0. Received: 'lots'" in err


def test_overrides_must_name_a_setting_that_gets_a_flag():
    with pytest.raises(ValueError, match="overrides for settings that get no flag: lr"):
        add_config_flags(argparse.ArgumentParser(), ["epochs"], lr={"help": "x"})
    with pytest.raises(ValueError, match="'speed' is not a TrainConfig setting"):
        add_config_flags(argparse.ArgumentParser(), ["speed"])


@pytest.mark.parametrize(("flags", "shown"), [(["-v"], True), ([], False)])
def test_verbose_shows_the_library_s_info_lines_and_the_level_is_restored_after(flags, shown, monkeypatch, capsys):
    import logging

    def fake_train(config=None, **kwargs):
        logging.getLogger("convscope.train").info("reading the images")
        raise Captured(config)

    monkeypatch.setattr("convscope.tasks.train.train", fake_train)
    before = logging.getLogger("convscope").level
    with pytest.raises(Captured):
        main([*flags, "train", "--model", "lenet5", "--data", "fashion-mnist"])
    assert ("reading the images" in capsys.readouterr().err) is shown
    assert logging.getLogger("convscope").level == before
