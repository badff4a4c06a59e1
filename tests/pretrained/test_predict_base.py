"""`convscope predict --base efficientnet-lite0`: ImageNet top-5 of real photos, offline."""

import json

from convscope.cli import main


def test_imagenet_top5_of_the_sample_photos(capsys):
    assert main(["predict", "--base", "efficientnet-lite0", "chelsea", "coffee", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [len(r["top"]) for r in rows] == [5, 5]
    cat, coffee = (r["top"][0]["class"] for r in rows)
    assert int(cat.rsplit("(", 1)[1].rstrip(")")) in range(281, 286)  # a cat class
    assert coffee == "espresso (967)"
    assert rows[0]["conversion"] == "RGB 451×300 → RGB 224×224 (shorter side 256, centre crop)"


def test_unknown_base_and_missing_run_are_one_line_errors(capsys):
    assert main(["predict", "--base", "resnet-9000", "chelsea"]) == 2
    assert "unknown base 'resnet-9000'. Bases: efficientnet-lite0" in capsys.readouterr().err
    assert main(["predict", "chelsea"]) == 2
    assert "predict needs a run folder and at least one image" in capsys.readouterr().err
