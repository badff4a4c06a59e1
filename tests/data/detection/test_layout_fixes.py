"""Layouts as people's datasets have them: image names with spaces and commas in ImageSets, a copied LabelImg XML
whose <filename> names another photo, empty split folders, a Roboflow split JSON given alone, nested folders, the
parent category of Roboflow's COCO, one class list for every layout, and lint paths that say which split."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from convscope.data.detection.convert import convert, read_raw
from convscope.data.detection.formats import FORMATS, format_of
from convscope.errors import DataError

W, H = 64, 40  # every test image, pixels


def _jpeg(path: Path, seed: int = 0) -> None:
    """A real JPEG, W×H; the same bytes for the same seed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (H, W, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)


def _xml(path: Path, filename: str, objects: list[tuple]) -> None:
    """objects: (name, xmin, ymin, xmax, ymax), 1-based inclusive."""
    body = "".join(
        f"<object><name>{n}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax>"
        "</bndbox></object>"
        for n, a, b, c, d in objects
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    head = f"<annotation><filename>{filename}</filename><size><width>{W}</width><height>{H}</height></size>"
    path.write_text(f"{head}{body}</annotation>", encoding="utf-8")


def _boxes(data) -> dict[str, dict[str, int]]:
    """split → image name → its number of boxes."""
    return {split: {image.path.name: len(image.boxes) for image in images} for split, images in data.splits.items()}


# ── 1. ImageSets lines that name ids with spaces and commas ───────────────────────────────────────────────────────
ODD = ["BloodImage 00002", "blood, sample X", "Zelle ä 1", "plain"]


def _voc_odd_names(root: Path) -> Path:
    for i, stem in enumerate(ODD):
        _jpeg(root / "JPEGImages" / f"{stem}.jpg", i)
        _xml(root / "Annotations" / f"{stem}.xml", f"{stem}.jpg", [("RBC", 2, 3, 20 + i, 30)] * 1)
    sets = root / "ImageSets" / "Main"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("BloodImage 00002\nblood, sample X\nplain\n", encoding="utf-8")
    (sets / "val.txt").write_text("Zelle ä 1\n", encoding="utf-8")
    (sets / "RBC_train.txt").write_text("BloodImage 00002  1\nplain -1\n", encoding="utf-8")  # per-class: ignored
    return root


def test_image_set_lines_name_ids_with_spaces_and_commas(tmp_path):
    data = read_raw(_voc_odd_names(tmp_path / "voc"))
    assert _boxes(data) == {"train": {"BloodImage 00002.jpg": 1, "blood, sample X.jpg": 1, "plain.jpg": 1},
                            "val": {"Zelle ä 1.jpg": 1}}  # fmt: skip
    assert [p for p in data.problems if not p.is_note] == []


def test_image_set_per_class_column_and_a_missing_id_with_a_space(tmp_path):
    from convscope.data.detection.voc import _set_entry

    xmls = {"a b": Path("a b.xml"), "c": Path("c.xml")}
    assert _set_entry("a b  -1", xmls) == ("a b", Path("a b.xml"))
    assert _set_entry("c 1", xmls) == ("c", Path("c.xml"))
    assert _set_entry("  a b \n", xmls) == ("a b", Path("a b.xml"))
    assert _set_entry("x y", xmls) == ("x y", None)
    assert _set_entry("x y 0", xmls) == ("x y", None)


@pytest.mark.parametrize("to", list(FORMATS))
def test_names_with_spaces_and_commas_survive_every_conversion(tmp_path, to):
    src = _voc_odd_names(tmp_path / "voc")
    summary = convert(src, to, tmp_path / "out")
    assert summary.splits["train"][:2] == (3, 3) and summary.dropped == 0
    back = read_raw(tmp_path / "out" / ("data.yaml" if to == "yolo" else ""))
    names = {split: sorted(b) for split, b in _boxes(back).items()}
    assert names["train"] == ["BloodImage 00002.jpg", "blood, sample X.jpg", "plain.jpg"]
    assert names["val"] == ["Zelle ä 1.jpg"]
    assert [p for p in back.problems if not p.is_note] == []


# ── 2. an XML copied beside its image with the <filename> of another ──────────────────────────────────────────────
def test_the_image_with_the_xml_files_own_name_wins_over_another_named_one(tmp_path):
    root = tmp_path / "split"
    for i, stem in enumerate(["a", "b", "c"]):
        _jpeg(root / "train" / f"{stem}.jpg", i)
    _xml(root / "train" / "a.xml", "a.jpg", [("RBC", 2, 2, 10, 10)])
    _xml(root / "train" / "b.xml", "a.jpg", [("RBC", 5, 5, 30, 30), ("WBC", 1, 1, 9, 9)])  # copied from a.xml
    _xml(root / "train" / "copy_of_c.xml", "c.jpg", [("RBC", 3, 3, 12, 12)])  # no copy_of_c.jpg: claims c.jpg
    _xml(root / "train" / "c.xml", "c.jpg", [("RBC", 4, 4, 13, 13)])
    data = read_raw(root)
    assert data.format == "voc-folders"
    assert _boxes(data) == {"train": {"a.jpg": 1, "b.jpg": 2, "c.jpg": 1}}
    c = next(image for image in data.splits["train"] if image.path.name == "c.jpg")
    assert c.boxes.xyxy.tolist() == [[3.0, 3.0, 13.0, 13.0]]  # c.xml, sorted first, keeps it
    problems = {p.kind: str(p) for p in data.problems}
    assert set(problems) == {"filename", "claimed"}
    assert problems["filename"].startswith("train/b.xml: <filename> 'a.jpg' names train/a.jpg, another image")
    assert "train/b.jpg" in problems["filename"]
    assert problems["claimed"] == "train/copy_of_c.xml: labels train/c.jpg, which train/c.xml labels already; skipped"


# ── 3. empty split folders ────────────────────────────────────────────────────────────────────────────────────────
def _voc_split_folders(root: Path) -> Path:
    for split, stems in {"train": ["a", "b"], "valid": ["c"]}.items():
        for i, stem in enumerate(stems):
            _jpeg(root / split / f"{stem}.jpg", ord(stem))
            _xml(root / split / f"{stem}.xml", f"{stem}.jpg", [("RBC", 2, 2, 10 + i, 12)])
    return root


def _coco_split(folder: Path, images: dict[str, list], categories=None) -> None:
    """images: file name → [(category id, x, y, w, h)]; Roboflow's categories (its parent id 0) unless given."""
    categories = categories or [
        {"id": 0, "name": "cells", "supercategory": "none"},
        {"id": 1, "name": "RBC", "supercategory": "cells"},
    ]
    doc = {"images": [], "annotations": [], "categories": categories}
    for i, (name, boxes) in enumerate(images.items()):
        _jpeg(folder / name, i)
        doc["images"].append({"id": i, "file_name": name, "width": W, "height": H})
        for cid, *xywh in boxes:
            doc["annotations"].append({"id": len(doc["annotations"]), "image_id": i, "category_id": cid, "bbox": xywh})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "_annotations.coco.json").write_text(json.dumps(doc))


def test_an_empty_test_folder_is_no_test_split_with_a_note(tmp_path, caplog):
    root = _voc_split_folders(tmp_path / "voc")
    (root / "test").mkdir()
    coco = tmp_path / "coco"
    _coco_split(coco / "train", {"a.jpg": [(1, 2, 2, 10, 10)]})
    _coco_split(coco / "test", {})  # Roboflow's empty test/: a JSON of no images
    for folder, fmt in ((root, "voc-folders"), (coco, "coco-folders")):
        assert format_of(folder).name == fmt
        with caplog.at_level(logging.INFO):
            data = read_raw(folder)
        assert "test" not in data.splits
        notes = [str(p) for p in data.problems]
        assert notes == ["test: split folder with no image and no labels: read as no test split"]
        assert [str(p) for p in FORMATS[fmt].lint(folder, data_dir=None)] == notes
        assert FORMATS[fmt].load(folder, 32, data_dir=None, seed=0, val_fraction=0.1).test is None
    assert "test: split folder with no image and no labels" in caplog.text


@pytest.mark.parametrize("to", list(FORMATS))
def test_an_empty_split_is_not_written_and_every_output_reads_back(tmp_path, to):
    from convscope.data.detection.boxes import RawDataset

    data = read_raw(_voc_split_folders(tmp_path / "voc"))
    data = RawDataset(data.format, data.classes, {**data.splits, "test": ()}, data.source)  # a split with no image
    FORMATS[to].write(data, tmp_path / "out", {(s, i): im.path.name for s, ims in data.splits.items()
                                                for i, im in enumerate(ims)})  # fmt: skip
    if to == "yolo":
        assert "test" not in yaml.safe_load((tmp_path / "out" / "data.yaml").read_text())
    back = read_raw(tmp_path / "out" / ("data.yaml" if to == "yolo" else ""))
    assert {split: len(images) for split, images in back.splits.items()} == {"train": 2, "val": 1}


# ── 4. one Roboflow split JSON given alone ────────────────────────────────────────────────────────────────────────
def test_a_json_alone_finds_its_images_beside_it_or_says_to_give_data_dir(tmp_path):
    _coco_split(tmp_path / "rf" / "train", {"a.jpg": [(1, 2, 2, 10, 10)], "b.jpg": [(1, 3, 3, 9, 9)]})
    json_path = tmp_path / "rf" / "train" / "_annotations.coco.json"
    assert _boxes(read_raw(json_path)) == {"train": {"a.jpg": 1, "b.jpg": 1}}
    assert FORMATS["coco"].lint(json_path, data_dir=None) == []
    assert len(FORMATS["coco"].load(json_path, 32, data_dir=None, seed=0, val_fraction=0.5).train.images) == 1
    (tmp_path / "rf" / "train" / "images").mkdir()  # images/ beside the JSON is the default when it is there …
    with pytest.raises(DataError) as caught:
        read_raw(json_path)
    assert str(caught.value) == (
        f"{json_path}: none of its 2 images is in {json_path.parent / 'images'}/ (first: 'a.jpg'); give their folder "
        "with --data-dir (default: images/ beside the JSON, else its folder)"
    )
    with pytest.raises(DataError, match="give their folder with --data-dir"):
        FORMATS["coco"].lint(json_path, data_dir=None)
    assert len(read_raw(json_path, tmp_path / "rf" / "train").splits["train"]) == 2  # … and --data-dir wins


# ── 6. Roboflow's parent category, annotated in one split only ───────────────────────────────────────────────────
def test_the_parent_category_is_kept_in_every_split_when_one_split_annotates_it(tmp_path):
    parent = {"id": 0, "name": "WBC-cells", "supercategory": "none"}
    categories = [parent, {"id": 1, "name": "WBC", "supercategory": "WBC-cells"}]
    _coco_split(tmp_path / "rf" / "train", {"a.jpg": [(0, 2, 2, 10, 10)], "b.jpg": [(1, 3, 3, 9, 9)]}, categories)
    _coco_split(tmp_path / "rf" / "valid", {"c.jpg": [(1, 2, 2, 10, 10)]}, categories)
    data = read_raw(tmp_path / "rf")
    assert data.classes == ("WBC-cells", "WBC")
    assert {im.path.name: im.boxes.classes.tolist() for ims in data.splits.values() for im in ims} == {
        "a.jpg": [0], "b.jpg": [1], "c.jpg": [1]}  # fmt: skip
    loaded = FORMATS["coco-folders"].load(tmp_path / "rf", 32, data_dir=None, seed=0, val_fraction=0.1)
    assert loaded.classes == ("WBC-cells", "WBC") and [b.classes.tolist() for b in loaded.val.targets] == [[1]]
    for split in ("train", "valid"):  # annotated nowhere: left out of every split, as before
        _coco_split(tmp_path / "rf2" / split, {f"{split}.jpg": [(1, 2, 2, 10, 10)]}, categories)
    assert read_raw(tmp_path / "rf2").classes == ("WBC",)


# ── 7. one class list for every layout ────────────────────────────────────────────────────────────────────────────
def test_the_tf_tutorial_folder_has_one_class_order_through_its_xml_and_its_csv(tmp_path):
    root = tmp_path / "tftut"
    rows = ["filename,width,height,class,xmin,ymin,xmax,ymax"]
    for split, stem, name in (("train", "a", "RBC"), ("train", "b", "WBC"), ("test", "c", "Platelets")):
        _jpeg(root / "images" / split / f"{stem}.jpg", ord(stem))
        _xml(root / "images" / split / f"{stem}.xml", f"{stem}.jpg", [(name, 2, 2, 20, 20)])
        rows.append(f"{stem}.jpg,{W},{H},{name},1,1,20,20")
    (root / "annotations").mkdir()
    (root / "annotations" / "label_map.pbtxt").write_text(
        "item { id: 1 name: 'WBC' }\nitem { id: 2 name: 'RBC' }\nitem { id: 3 name: 'Platelets' }\n"
    )
    (root / "annotations" / "train_labels.csv").write_text("\n".join(rows[:3]) + "\n")
    (root / "annotations" / "test_labels.csv").write_text("\n".join(rows[:1] + rows[3:]) + "\n")
    through_xml = read_raw(root)
    assert through_xml.format == "voc-folders"
    through_csv = FORMATS["csv"].read_raw(root, data_dir=None)
    assert _boxes(through_csv) == {"train": {"a.jpg": 1, "b.jpg": 1}, "test": {"c.jpg": 1}}
    single = read_raw(root / "annotations" / "train_labels.csv", root / "images" / "train")
    voc = tmp_path / "voc"  # a VOC folder whose label map is in its annotations/ folder
    _jpeg(voc / "JPEGImages" / "a.jpg")
    _xml(voc / "Annotations" / "a.xml", "a.jpg", [("RBC", 2, 2, 20, 20)])
    (voc / "Annotations" / "labelmap.pbtxt").write_text("item { id: 1 name: 'WBC' }\nitem { id: 2 name: 'RBC' }\n")
    order = ("WBC", "RBC", "Platelets")
    assert through_xml.classes == through_csv.classes == single.classes == order
    assert read_raw(voc).classes == ("WBC", "RBC")


# ── 5. nested folders inside a split folder; eval/ as the val folder ─────────────────────────────────────────────
def test_xml_files_in_nested_folders_are_one_problem_and_eval_is_the_val_folder(tmp_path):
    root = tmp_path / "tftut"
    for split, stem in (("train", "a"), ("train", "b"), ("eval", "c")):
        _jpeg(root / "images" / split / f"{stem}.jpg", ord(stem))
        _xml(root / "images" / split / f"{stem}.xml", f"{stem}.jpg", [("RBC", 2, 2, 20, 20)])
    for stem in ("astronaut", "zebra"):
        _jpeg(root / "images" / "train" / "nested" / f"{stem}.jpg")
        _xml(root / "images" / "train" / "nested" / "deeper" / f"{stem}.xml", f"{stem}.jpg", [("RBC", 2, 2, 9, 9)])
    data = read_raw(root)
    assert _boxes(data) == {"train": {"a.jpg": 1, "b.jpg": 1}, "val": {"c.jpg": 1}}
    assert [(p.path, p.kind) for p in data.problems] == [("images/train/nested/deeper", "nested")]
    assert data.problems[0].message.startswith(
        "2 XML file(s) in folders nested inside the split folders were not read (first: "
        "images/train/nested/deeper/astronaut.xml)"
    )
    coco = tmp_path / "coco"
    _coco_split(coco / "train", {"a.jpg": [(1, 2, 2, 10, 10)]})
    _coco_split(coco / "eval", {"b.jpg": [(1, 2, 2, 10, 10)]})
    assert _boxes(read_raw(coco)) == {"train": {"a.jpg": 1}, "val": {"b.jpg": 1}}


# ── 8. what the lint says: split folders in paths, one problem when a CSV's images are elsewhere ──────────────────
def test_coco_split_folder_images_are_named_with_their_folder(tmp_path):
    root = tmp_path / "rf"
    _coco_split(root / "train", {"a.jpg": [(1, 2, 2, 10, 10)]})
    _coco_split(root / "test", {"copy_of_a.jpg": [(1, 2, 2, 10, 10)]})  # the same bytes (seed 0) as train/a.jpg
    data = read_raw(root)
    assert [image.name for images in data.splits.values() for image in images] == ["train/a.jpg", "test/copy_of_a.jpg"]


def _csv(path: Path, names: list[str]) -> None:
    rows = ["filename,width,height,class,xmin,ymin,xmax,ymax"] + [f"{n},{W},{H},RBC,1,1,20,20" for n in names]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n")


def test_a_csv_whose_images_are_elsewhere_is_one_problem_with_a_data_dir_hint(tmp_path):
    csv_path = tmp_path / "ds" / "annotations" / "train_labels.csv"
    _csv(csv_path, ["a.jpg", "b.jpg", "c.jpg"])
    for stem in "abc":
        _jpeg(tmp_path / "ds" / "photos" / f"{stem}.jpg", ord(stem))
    problems = FORMATS["csv"].lint(csv_path, data_dir=None)
    assert [(p.path, p.kind) for p in problems] == [("train_labels.csv", "missing"), ("train_labels.csv", "no-box")]
    assert problems[0].message == (
        "none of the 3 images its rows name is in ./ (first: image 'a.jpg'); give their folder with --data-dir"
    )
    found = FORMATS["csv"].lint(csv_path, data_dir=tmp_path / "ds" / "photos")
    assert found == []


def test_a_single_test_labels_csv_is_read_as_train_and_says_so(tmp_path, caplog):
    csv_path = tmp_path / "ds" / "test_labels.csv"
    _csv(csv_path, ["a.jpg"])
    _jpeg(tmp_path / "ds" / "a.jpg")
    with caplog.at_level(logging.INFO):
        data = read_raw(csv_path)
    assert list(data.splits) == ["train"]
    assert [(str(p), p.is_note) for p in data.problems] == [
        ("test_labels.csv: named for the test split but without a split column: its rows are read as the train "
         "split", True)]  # fmt: skip
    assert "test_labels.csv: no split column, so its rows are the train split" in caplog.text


def test_the_tf_tutorials_annotations_csv_finds_its_images_in_images_split(tmp_path):
    csv_path = tmp_path / "ds" / "annotations" / "test_labels.csv"
    _csv(csv_path, ["a.jpg"])
    _jpeg(tmp_path / "ds" / "images" / "test" / "a.jpg")
    data = read_raw(csv_path)
    assert _boxes(data) == {"train": {"a.jpg": 1}} and [p.kind for p in data.problems] == ["split-name"]


# ── COCO file names that differ from the files on disk only in case; training/ and testing/ split folders ────────
def _coco_upper_case_on_disk(folder: Path, names: list[str]) -> None:
    """A Roboflow split folder whose JSON names `names` (2 boxes each), the files on disk with upper-case suffixes."""
    _coco_split(folder, {name: [(1, 2, 2, 10, 10), (1, 20, 5, 30, 20)] for name in names})
    for name in names:
        (folder / name).rename(folder / (Path(name).stem + Path(name).suffix.upper()))


def test_coco_images_whose_case_differs_on_disk_load_with_all_their_boxes(tmp_path):
    from convscope.data.detection.coco import lint_coco, load_coco

    root = tmp_path / "bccd"
    _coco_upper_case_on_disk(root / "train", ["BloodImage_00001.jpg", "BloodImage_00002.jpg"])
    assert sorted(p.name for p in (root / "train").glob("*.JPG")) == ["BloodImage_00001.JPG", "BloodImage_00002.JPG"]
    json_path = root / "train" / "_annotations.coco.json"
    split, classes = load_coco(json_path, root / "train", 64, hint="give --data-dir")
    assert classes == ("RBC",) and split.problems == ()
    assert split.names == ("BloodImage_00001.jpg", "BloodImage_00002.jpg")
    assert [len(boxes) for boxes in split.targets] == [2, 2] and split.images.shape == (2, 64, 64, 3)
    assert lint_coco(json_path, root / "train") == []
    data = read_raw(root)  # the split folders' reader, in the images' own pixels
    assert _boxes(data) == {"train": {"BloodImage_00001.JPG": 2, "BloodImage_00002.JPG": 2}}
    assert data.problems == ()


def test_coco_names_differing_only_in_case_prefer_the_exact_file_else_are_a_problem(tmp_path):
    from convscope.data.detection.coco import lint_coco, read_coco_raw

    folder = tmp_path / "train"
    _coco_split(folder, {"a.jpg": [(1, 2, 2, 10, 10)], "b.jpg": [(1, 2, 2, 10, 10)]})
    _jpeg(folder / "A.JPG", 7)  # a.jpg exists exactly: it is the one read
    (folder / "b.jpg").rename(folder / "B.jpg")
    _jpeg(folder / "b.JPG", 8)  # b.jpg is not there: B.jpg and b.JPG both differ only in case
    _, images, problems = read_coco_raw(folder / "_annotations.coco.json", folder)
    assert [image.path.name for image in images] == ["a.jpg"]
    assert [(Path(p.path).name, p.kind) for p in problems] == [("b.jpg", "missing")]
    assert (
        problems[0].message
        == "image 1: 2 files differing from it only in case (B.jpg, b.JPG), skipped with its 1 annotation(s)"
    )
    assert [p.kind for p in lint_coco(folder / "_annotations.coco.json", folder)] == ["missing"]


def test_training_and_testing_folders_are_the_train_and_test_splits(tmp_path):
    voc, coco, csv_root = tmp_path / "voc", tmp_path / "coco", tmp_path / "csv"
    for split, stems in {"Training": ["a", "b"], "testing": ["c"]}.items():
        for i, stem in enumerate(stems):
            _jpeg(voc / split / f"{stem}.jpg", ord(stem))
            _xml(voc / split / f"{stem}.xml", f"{stem}.jpg", [("RBC", 2, 2, 10 + i, 12)])
            _jpeg(csv_root / split / f"{stem}.jpg", ord(stem))
        _coco_split(coco / split.lower(), {f"{stem}.jpg": [(1, 2, 2, 10, 10)] for stem in stems})
        _csv(csv_root / split / "_annotations.csv", [f"{stem}.jpg" for stem in stems])
    expected = {"train": {"a.jpg": 1, "b.jpg": 1}, "test": {"c.jpg": 1}}
    for root, fmt in ((voc, "voc-folders"), (coco, "coco-folders"), (csv_root, "csv")):
        assert format_of(root).name == fmt
        data = read_raw(root)
        assert {split: images for split, images in _boxes(data).items() if images} == expected, fmt
    from convscope.data.detection.tfcsv_files import split_word

    assert (split_word("training_labels"), split_word("Testing")) == ("train", "test")
