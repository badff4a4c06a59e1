"""COCO crowd regions (iscrowd 1): not training targets, and ignore regions in scoring, exactly as pycocotools
scores the same JSON and detections."""

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convscope.data.detection.coco import load_coco
from convscope.data.detection.load import load_detection
from convscope.detect.evaluate import split_metrics
from convscope.detect.metrics import coco_evaluate

pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402


def test_a_detection_inside_a_crowd_region_is_ignored():
    truth = [(np.array([[10, 10, 30, 30]], np.float32), np.array([0]))]
    crowds = [(np.array([[60, 60, 120, 120]], np.float32), np.array([0]))]
    # The object found (0.8), and a higher-scored detection inside the crowd region (0.9).
    found = [(np.array([[10, 10, 30, 30], [70, 70, 100, 100]], np.float32), np.array([0.8, 0.9]), np.array([0, 0]))]
    assert coco_evaluate(truth, found, ["person"], (128, 128), crowds).map50 == pytest.approx(1.0)
    # Without the crowd region the detection is a false positive ranked first: precision 1/2 at every recall.
    assert coco_evaluate(truth, found, ["person"], (128, 128)).map50 == pytest.approx(0.5)


def _write_coco(root: Path, images: list[tuple[int, int]], annotations: list[dict]) -> tuple[Path, Path]:
    """A COCO JSON with images i.png (width×height, gray), categories 1 person and 2 dog, and `annotations`."""
    (root / "images").mkdir(parents=True)
    entries = []
    for i, (width, height) in enumerate(images, start=1):
        Image.fromarray(np.full((height, width, 3), 80, np.uint8)).save(root / "images" / f"{i}.png")
        entries.append({"id": i, "file_name": f"{i}.png", "width": width, "height": height})
    anns = [{"id": k, "area": a["bbox"][2] * a["bbox"][3], "iscrowd": 0, **a} for k, a in enumerate(annotations, 1)]
    doc = {
        "images": entries,
        "annotations": anns,
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}],
    }
    (root / "instances.json").write_text(json.dumps(doc))
    return root / "instances.json", root / "images"


def _pycocotools(json_path: Path, detections: list[dict]) -> np.ndarray:
    """COCOeval's 12 stats of `detections` (COCO results: image_id, category_id, bbox xywh, score) on the JSON."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(json_path))
        evaluator = COCOeval(gt, gt.loadRes(detections), iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator.stats


def _ours(json_path: Path, images: Path, detections: list[dict], size: int):
    """convscope's metrics of the same detections, moved into the letterboxed images' pixels."""
    split, classes = load_coco(json_path, images, size)
    found = []
    for name in split.names:
        image_id = int(name.removesuffix(".png"))
        width, height = Image.open(images / name).size
        scale = size / max(width, height)
        pad = np.array([(size - int(width * scale + 1e-9)) // 2, (size - int(height * scale + 1e-9)) // 2] * 2)
        mine = [d for d in detections if d["image_id"] == image_id]
        xyxy = np.array([[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in mine)]).reshape(-1, 4)
        scores = np.array([d["score"] for d in mine])
        found.append((xyxy * scale + pad, scores, np.array([d["category_id"] - 1 for d in mine], np.int64)))
    return split, split_metrics(split, found, classes)


def test_one_image_crowd_example_equals_pycocotools(tmp_path):
    json_path, images = _write_coco(
        tmp_path,
        [(200, 100)],
        [
            {"image_id": 1, "category_id": 1, "bbox": [20, 10, 40, 60]},  # the one real person
            {"image_id": 1, "category_id": 1, "bbox": [100, 20, 90, 70], "iscrowd": 1},  # a crowd of people
        ],
    )
    detections = [
        {"image_id": 1, "category_id": 1, "bbox": [20, 10, 40, 60], "score": 0.8},  # found
        {"image_id": 1, "category_id": 1, "bbox": [120, 30, 30, 40], "score": 0.9},  # inside the crowd region
    ]
    split, ours = _ours(json_path, images, detections, 64)
    assert [len(t) for t in split.targets] == [1] and [len(c) for c in split.crowds] == [1]  # the crowd: no target
    stats = _pycocotools(json_path, detections)
    assert ours.map50 == pytest.approx(1.0) and stats[1] == pytest.approx(1.0)
    assert ours.map50_95 == pytest.approx(stats[0], abs=1e-12) and ours.per_class_ap50["person"] == pytest.approx(1.0)


def test_several_images_and_classes_equal_pycocotools(tmp_path):
    json_path, images = _write_coco(
        tmp_path,
        [(200, 100), (80, 120), (100, 100)],
        [
            {"image_id": 1, "category_id": 1, "bbox": [20, 10, 40, 60]},
            {"image_id": 1, "category_id": 1, "bbox": [100, 20, 90, 70], "iscrowd": 1},
            {"image_id": 1, "category_id": 2, "bbox": [60, 50, 30, 30]},
            {"image_id": 2, "category_id": 2, "bbox": [5, 5, 60, 50], "iscrowd": 1},
            {"image_id": 2, "category_id": 2, "bbox": [10, 70, 40, 40]},
            {"image_id": 3, "category_id": 1, "bbox": [30, 30, 40, 50]},
        ],
    )
    detections = [
        {"image_id": 1, "category_id": 1, "bbox": [22, 12, 40, 58], "score": 0.7},
        {"image_id": 1, "category_id": 1, "bbox": [120, 30, 30, 40], "score": 0.95},  # in the crowd
        {"image_id": 1, "category_id": 1, "bbox": [0, 80, 20, 15], "score": 0.9},  # a false positive
        {"image_id": 1, "category_id": 2, "bbox": [63, 52, 30, 27], "score": 0.6},
        {"image_id": 2, "category_id": 2, "bbox": [10, 10, 40, 30], "score": 0.85},  # in the dog crowd
        {"image_id": 2, "category_id": 2, "bbox": [14, 72, 38, 40], "score": 0.5},
        {"image_id": 2, "category_id": 1, "bbox": [10, 10, 40, 30], "score": 0.4},  # a person where dogs crowd
        {"image_id": 3, "category_id": 1, "bbox": [35, 28, 40, 50], "score": 0.65},
    ]
    _split, ours = _ours(json_path, images, detections, 64)
    stats = _pycocotools(json_path, detections)
    assert ours.map50 == pytest.approx(stats[1], abs=1e-12) and ours.map50_95 == pytest.approx(stats[0], abs=1e-12)
    assert 0 < ours.map50_95 < ours.map50 < 1  # a case with something to get wrong


def test_held_out_splits_keep_their_crowd_regions(tmp_path):
    boxes = [{"image_id": i, "category_id": 1, "bbox": [10, 10, 20, 20]} for i in range(1, 5)]
    crowds = [{"image_id": i, "category_id": 1, "bbox": [40, 40, 10 + i, 10], "iscrowd": 1} for i in range(1, 5)]
    json_path, images = _write_coco(tmp_path, [(64, 64)] * 4, boxes + crowds)
    data = load_detection(str(json_path), str(images), 64, 0.5, 0)
    for split in (data.train, data.val):
        assert len(split.crowds) == len(split) == 2
        for name, crowd in zip(split.names, split.crowds, strict=True):
            np.testing.assert_allclose(crowd.xyxy, [[40, 40, 50 + int(name.removesuffix(".png")), 50]])
