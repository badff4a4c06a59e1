"""The format table: which format a path is, the one place that decides it, and the names `detect convert --to`
offers."""

import argparse

import pytest

from convscope.cli import build_parser
from convscope.data.detection.formats import FORMATS, format_of
from convscope.errors import DataError


@pytest.mark.parametrize(
    "files, expected",
    [
        (["data.yaml"], "yolo"),
        (["train.json"], "coco"),
        (["annotations/instances_val2017.json"], "coco"),
        (["Annotations/a.xml"], "voc"),
        (["a.xml", "a.jpg"], "voc"),
        (["data.yaml", "train.json", "a.xml"], "yolo"),  # the table's order breaks ties
        (["train.json", "a.xml"], "coco"),
    ],
)
def test_a_folder_is_the_first_format_that_holds_it(tmp_path, files, expected):
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    assert format_of(tmp_path).name == expected


def test_a_file_is_its_suffix_and_only_training_reads_a_missing_one_by_name(tmp_path):
    for name, expected in (("d.yaml", "yolo"), ("d.YML", "yolo"), ("a.json", "coco")):
        (tmp_path / name).write_text("")
        assert format_of(tmp_path / name).name == expected
    assert format_of(tmp_path / "missing.json", by_name=True).name == "coco"
    with pytest.raises(DataError, match=r"missing\.json: expected a YOLO dataset folder .* found nothing$"):
        format_of(tmp_path / "missing.json")
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(DataError, match="found a file$"):
        format_of(tmp_path / "notes.txt")
    with pytest.raises(DataError, match="found a folder with none of them$"):
        format_of(tmp_path)


def test_convert_offers_the_formats_of_the_table():
    detect = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["detect"]
    actions = next(a for a in detect._actions if isinstance(a, argparse._SubParsersAction)).choices
    to = next(a for a in actions["convert"]._actions if a.dest == "to")
    assert tuple(to.choices) == tuple(FORMATS) == ("yolo", "coco", "voc", "voc-folders", "coco-folders", "csv")
    assert all(name == fmt.name for name, fmt in FORMATS.items())
