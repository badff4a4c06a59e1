"""fashion-scenes: deterministic, tight boxes, little overlap, train items only in train scenes, safe output folder."""

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convscope import DataError
from convscope.data.detection.scenes import ALPHA_PERCENTILE, MANIFEST, MAX_COVER, MAX_IOU, VISIBLE_ALPHA, make_scenes
from convscope.data.detection.yolo import load_yolo
from convscope.data.idx import FASHION_CLASSES

SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")
TRAIN_CLASSES = range(0, 5)  # the fake train items are classes 0–4 and the test items 5–9: provenance shows in labels
TEST_CLASSES = range(5, 10)


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(f">BBBB{array.ndim}I", 0, 0, 0x08, array.ndim, *array.shape)
    path.write_bytes(gzip.compress(header + array.tobytes()))


def _items(n: int, rng: np.random.Generator) -> np.ndarray:
    """n×28×28 uint8 blobs of varied shape and brightness (some dim, like dark garments)."""
    y, x = np.mgrid[0:28, 0:28]
    items = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        cy, cx = rng.uniform(9, 19, 2)
        ry, rx = rng.uniform(3, 13, 2)
        r = ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2
        items[i] = np.clip((1.2 - r) * rng.uniform(40, 255), 0, 255).astype(np.uint8)
    return items


@pytest.fixture(scope="module")
def fashion(tmp_path_factory) -> Path:
    """A small fake Fashion-MNIST folder: 80 train items (classes 0–4), 30 test items (classes 5–9)."""
    folder = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(0)
    for prefix, n, classes in (("train", 80, TRAIN_CLASSES), ("t10k", 30, TEST_CLASSES)):
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", _items(n, rng))
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", rng.choice(list(classes), n).astype(np.uint8))
    return folder


@pytest.fixture(scope="module")
def scenes(tmp_path_factory, fashion) -> Path:
    return make_scenes(tmp_path_factory.mktemp("scenes") / "out", 40, seed=3, data_dir=fashion)


def _manifest(root: Path) -> dict:
    return json.loads((root / MANIFEST).read_text())


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _fake_items(fashion: Path, source: str) -> tuple[np.ndarray, np.ndarray]:
    from convscope.data.idx import load_idx_dataset

    split = getattr(load_idx_dataset(fashion), source)
    return split.images[..., 0], split.labels


def _label_rows(path: Path, size: int) -> list[tuple[int, list[float]]]:
    """(class, xyxy px) per row of a YOLO label file."""
    rows = []
    for line in path.read_text().splitlines():
        cls, cx, cy, w, h = line.split()
        cx, cy, w, h = (float(v) * size for v in (cx, cy, w, h))
        rows.append((int(cls), [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]))
    return rows


def _cover(a, b) -> float:
    """Intersection over the smaller box's area."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return ix * iy / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# --- layout and determinism -----------------------------------------------------------------------------------------


def test_writes_a_yolo_dataset_split_80_10_10(scenes):
    files = _files(scenes)
    for split, count in (("train", 32), ("val", 4), ("test", 4)):
        assert sum(name.startswith(f"images/{split}/") for name in files) == count
        assert sum(name.startswith(f"labels/{split}/") for name in files) == count
    assert not [name for name in files if Path(name).name.startswith(".")]  # no temporary files left
    manifest = _manifest(scenes)
    assert manifest["complete"] and manifest["counts"] == {"train": 32, "val": 4, "test": 4}
    assert len(manifest["scenes"]) == 40


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path, fashion, scenes):
    again = make_scenes(tmp_path / "again", 40, seed=3, data_dir=fashion)
    assert _files(again) == _files(scenes)
    other = _files(make_scenes(tmp_path / "other", 40, seed=4, data_dir=fashion))
    images = [name for name in other if name.endswith(".png")]
    assert all(other[name] != _files(scenes)[name] for name in images)


def test_a_scene_does_not_depend_on_n(tmp_path, fashion, scenes):
    small = _files(make_scenes(tmp_path / "small", 20, seed=3, data_dir=fashion))  # 16 / 2 / 2
    big = _files(scenes)
    shared = [name for name in small if name.startswith(("images/", "labels/"))]
    assert len(shared) == 40
    assert all(small[name] == big[name] for name in shared)


# --- boxes --------------------------------------------------------------------------------------------------------


def _alpha(item: np.ndarray, width: int, height: int) -> np.ndarray:
    """The alpha the generator should have pasted, recomputed from the item: stretch, crop, Pillow bilinear."""
    top = np.percentile(item[item > 0], ALPHA_PERCENTILE)
    stretched = np.rint(np.clip(item * (255 / top), 0, 255)).astype(np.uint8)
    rows, cols = np.nonzero(item)
    crop = stretched[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    return np.asarray(Image.fromarray(crop).resize((width, height), Image.Resampling.BILINEAR))


def test_every_box_is_the_tight_box_of_the_pasted_pixels(scenes, fashion):
    manifest = _manifest(scenes)
    items = {source: _fake_items(fashion, source) for source in ("train", "test")}
    shown_tint = 0
    for scene in manifest["scenes"]:
        image = np.asarray(Image.open(scenes / scene["image"]).convert("RGB"))
        rows = _label_rows(scenes / scene["label"], 128)
        assert len(rows) == len(scene["objects"])
        for k, (obj, (cls, xyxy)) in enumerate(zip(scene["objects"], rows, strict=True)):
            pixels, labels = items[scene["source"]]
            x, y, w, h = obj["patch"]
            alpha = _alpha(pixels[obj["item"]], w, h)
            ys, xs = np.nonzero(alpha > VISIBLE_ALPHA)
            tight = [x + xs.min(), y + ys.min(), x + xs.max() + 1, y + ys.max() + 1]
            assert obj["box"] == tight, scene["image"]
            np.testing.assert_allclose(xyxy, tight, atol=1e-3)  # the label file says the same, normalised
            assert cls == obj["class"] == labels[obj["item"]]
            # Where the item is opaque and nothing was pasted later, the image shows exactly its tint: the pixels
            # really came from this item at this place.
            opaque = np.zeros((128, 128), bool)
            opaque[y : y + h, x : x + w] = alpha == 255
            for later in scene["objects"][k + 1 :]:
                lx, ly, lw, lh = later["patch"]
                opaque[ly : ly + lh, lx : lx + lw] = False
            if opaque.any():
                shown_tint += 1
                assert (image[opaque] == obj["tint"]).all(), scene["image"]
    assert shown_tint > 0.8 * sum(len(scene["objects"]) for scene in manifest["scenes"])


def test_object_counts_and_overlap_stay_in_bounds(scenes):
    counts = []
    for label in sorted(scenes.glob("labels/*/*.txt")):
        boxes = [xyxy for _, xyxy in _label_rows(label, 128)]
        counts.append(len(boxes))
        for i, a in enumerate(boxes):
            eps = 1e-3  # the label files round to 6 decimals
            assert -eps <= a[0] < a[2] <= 128 + eps and -eps <= a[1] < a[3] <= 128 + eps
            assert all(_iou(a, b) <= MAX_IOU + 1e-6 for b in boxes[:i]), label
            assert all(_cover(a, b) <= MAX_COVER + 1e-6 for b in boxes[:i]), label  # no item hidden under another
    assert min(counts) >= 1 and max(counts) <= 6
    assert len(set(counts)) >= 4  # varied, not always the maximum


def test_object_sizes_follow_min_and_max_side(scenes):
    for scene in _manifest(scenes)["scenes"]:
        for obj in scene["objects"]:
            assert 12 <= max(obj["patch"][2:]) <= 56


def test_train_scenes_use_only_train_items(scenes):
    # By construction of the fake data: train items are classes 0–4, test items 5–9.
    for split, allowed in (("train", TRAIN_CLASSES), ("val", TEST_CLASSES), ("test", TEST_CLASSES)):
        classes = {cls for label in scenes.glob(f"labels/{split}/*.txt") for cls, _ in _label_rows(label, 128)}
        assert classes and classes <= set(allowed), split
    # And in the manifest: val draws from the first half of the test items, test from the second.
    for scene in _manifest(scenes)["scenes"]:
        split = scene["image"].split("/")[1]
        assert scene["source"] == ("train" if split == "train" else "test")
        for obj in scene["objects"]:
            assert {"train": True, "val": obj["item"] < 15, "test": obj["item"] >= 15}[split]


def test_load_yolo_reads_the_boxes_back(scenes):
    manifest = _manifest(scenes)
    for image_size in (128, 64):
        data = load_yolo(scenes, image_size)
        assert data.classes == FASHION_CLASSES and not data.problems
        assert (len(data.train), len(data.val), len(data.test)) == (32, 4, 4)
        splits = {"train": data.train, "val": data.val, "test": data.test}
        for scene in manifest["scenes"]:
            split = splits[scene["image"].split("/")[1]]
            target = split.targets[split.names.index(scene["image"])]
            expected = np.array([obj["box"] for obj in scene["objects"]], np.float32) * image_size / 128
            np.testing.assert_allclose(target.xyxy, expected, atol=0.5)
            assert target.classes.tolist() == [obj["class"] for obj in scene["objects"]]


# --- the output folder ----------------------------------------------------------------------------------------------


def test_refuses_a_folder_it_did_not_write(tmp_path, fashion):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=r"expected an empty folder or a previous fashion-scenes output"):
        make_scenes(tmp_path, 10, data_dir=fashion)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="found a file"):
        make_scenes(tmp_path / "file", 10, data_dir=fashion)


def test_refuses_a_previous_output_with_files_added(tmp_path, fashion):
    out = make_scenes(tmp_path / "out", 10, data_dir=fashion)
    (out / "images" / "train" / "extra.png").write_bytes(b"x")
    with pytest.raises(DataError, match=r"holds images/train/extra.png"):
        make_scenes(out, 10, data_dir=fashion)


def test_rewrites_a_previous_output_and_drops_its_extra_scenes(tmp_path, fashion):
    out = make_scenes(tmp_path / "out", 30, seed=1, data_dir=fashion)
    make_scenes(out, 10, seed=2, data_dir=fashion)
    assert _files(out) == _files(make_scenes(tmp_path / "fresh", 10, seed=2, data_dir=fashion))
    data = load_yolo(out, 64)
    assert (len(data.train), len(data.val), len(data.test)) == (8, 1, 1)


def test_tiny_n_leaves_out_empty_splits(tmp_path, fashion):
    out = make_scenes(tmp_path / "out", 3, data_dir=fashion)
    data = load_yolo(out, 64)
    assert len(data.train) == 3 and data.val is None and data.test is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n": 0}, "n ≥ 1"),
        ({"n": 5, "seed": -1}, "seed ≥ 0"),
        ({"n": 5, "min_side": 30, "max_side": 20}, "min_side ≤ max_side"),
        ({"n": 5, "size": 32}, "max_side ≤ size"),
        ({"n": 2.5}, "n must be an integer"),
    ],
)
def test_bad_settings_are_data_errors(tmp_path, fashion, kwargs, message):
    with pytest.raises(DataError, match=message):
        make_scenes(tmp_path / "out", data_dir=fashion, **kwargs)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(not SYSTEM_FASHION.is_dir(), reason="no system copy of Fashion-MNIST")
def test_real_fashion_mnist(tmp_path):
    out = make_scenes(tmp_path / "out", 10, seed=0)
    data = load_yolo(out, 128)
    assert len(data.train) == 8 and not data.problems
    assert all(1 <= len(target) <= 6 for target in data.train.targets)


def test_recovers_from_an_interrupted_run(tmp_path, fashion):
    out = make_scenes(tmp_path / "out", 10, data_dir=fashion)
    # What a crash leaves: the first manifest (complete: false), no data.yaml, a temporary file.
    manifest = _manifest(out)
    (out / MANIFEST).write_text(json.dumps({k: manifest[k] for k in ("generator", "format", "files")}))
    (out / "data.yaml").unlink()
    (out / "images" / "train" / ".000003.png.tmp").write_bytes(b"half")
    make_scenes(out, 10, data_dir=fashion)
    assert _files(out) == _files(make_scenes(tmp_path / "fresh", 10, data_dir=fashion))
