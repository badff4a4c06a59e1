"""COCO metrics through pycocotools on hand-made cases whose APs can be worked out on paper."""

import math

import numpy as np
import pytest
import torch

from convscope.detect.metrics import DetectionMetrics, coco_evaluate, plot_pr_curves

pytest.importorskip("pycocotools")

NAMES = ["cat", "dog", "bird"]
SIZE = (128, 128)


def ground_truth() -> list[tuple[np.ndarray, np.ndarray]]:
    """Three images: two cats and a dog, one dog, and no boxes at all. No birds anywhere."""
    return [
        (np.array([[10, 10, 30, 30], [60, 20, 100, 50], [40, 70, 80, 120]], np.float32), np.array([0, 0, 1])),
        (np.array([[20, 30, 60, 90]], np.float32), np.array([1])),
        (np.zeros((0, 4), np.float32), np.zeros(0, np.int64)),
    ]


def perfect() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return [(boxes, np.linspace(0.9, 0.5, len(boxes)), classes) for boxes, classes in ground_truth()]


def test_perfect_detections_score_one():
    m = coco_evaluate(ground_truth(), perfect(), NAMES, SIZE)
    assert m.map50 == pytest.approx(1.0) and m.map50_95 == pytest.approx(1.0)
    assert m.per_class_ap50["cat"] == pytest.approx(1.0) and m.per_class_ap50_95["dog"] == pytest.approx(1.0)
    assert m.precision.shape == (10, 101, 3, 4, 3)
    assert "Average Precision" in m.summary


def test_class_without_ground_truth_is_nan_and_none_in_json():
    dets = perfect()
    dets[2] = (np.array([[5, 5, 25, 25]], np.float32), np.array([0.99]), np.array([2]))  # a bird nobody drew
    m = coco_evaluate(ground_truth(), dets, NAMES, SIZE)
    assert math.isnan(m.per_class_ap50["bird"]) and math.isnan(m.per_class_ap50_95["bird"])
    assert m.map50 == pytest.approx(1.0)  # COCO averages over the classes that occur
    d = m.to_dict()
    assert d["per_class_ap50"]["bird"] is None and d["per_class_ap50_95"]["cat"] == pytest.approx(1.0)
    assert d["map50"] == pytest.approx(1.0)


def test_shifted_detections_pass_iou_half_but_not_the_strict_thresholds():
    # Every box moved right by 1/10 of its width: overlap 0.9·A, union 1.1·A, IoU = 0.9/1.1 = 0.818.
    # It matches at the IoU thresholds 0.50 … 0.80 (7 of 10) and misses at 0.85 … 0.95, so AP50-95 = 0.7.
    shifted = []
    for boxes, scores, classes in perfect():
        width = boxes[:, 2] - boxes[:, 0]
        shifted.append((boxes + np.stack([width, 0 * width, width, 0 * width], 1) / 10, scores, classes))
    m = coco_evaluate(ground_truth(), shifted, NAMES, SIZE)
    assert m.map50 == pytest.approx(1.0)
    assert m.map50_95 == pytest.approx(0.7)
    assert m.per_class_ap50_95["cat"] == pytest.approx(0.7)


def test_a_missed_object_halves_recall_for_its_class_only():
    dets = perfect()
    boxes, scores, classes = dets[0]
    dets[0] = (boxes[1:], scores[1:], classes[1:])  # the first cat is missed
    m = coco_evaluate(ground_truth(), dets, NAMES, SIZE)
    # Cat: precision 1 up to recall 1/2, then nothing: 51 of COCO's 101 recall thresholds (0, 0.01 … 0.50).
    assert m.per_class_ap50["cat"] == pytest.approx(51 / 101)
    assert m.per_class_ap50_95["cat"] == pytest.approx(51 / 101)
    assert m.per_class_ap50["dog"] == pytest.approx(1.0)
    assert m.map50 == pytest.approx((51 / 101 + 1) / 2)
    assert m.recall[0, 0, 0, -1] == pytest.approx(0.5) and m.recall[0, 1, 0, -1] == pytest.approx(1.0)


def test_a_false_positive_ranked_first_costs_precision():
    dets = perfect()
    boxes, scores, classes = dets[1]
    dets[1] = (np.vstack([boxes, [[90, 90, 120, 120]]]), np.append(scores, 0.95), np.append(classes, 1))
    m = coco_evaluate(ground_truth(), dets, NAMES, SIZE)
    # Dogs ranked: image 0's dog (0.5) and the false one (0.95) and image 1's dog (0.9): TP order FP, TP, TP.
    # Interpolated precision is 2/3 at every recall up to 1.
    assert m.per_class_ap50["dog"] == pytest.approx(2 / 3, abs=1e-6)
    assert m.per_class_ap50["cat"] == pytest.approx(1.0)


def test_no_detections_scores_zero():
    empty = [(np.zeros((0, 4), np.float32), np.zeros(0), np.zeros(0, np.int64)) for _ in range(3)]
    m = coco_evaluate(ground_truth(), empty, NAMES, SIZE)
    assert m.map50 == 0.0 and m.map50_95 == 0.0
    assert m.per_class_ap50["cat"] == 0.0 and math.isnan(m.per_class_ap50["bird"])


def test_accepts_decode_output_tensors():
    dets = [(torch.from_numpy(b), torch.from_numpy(s).float(), torch.from_numpy(c)) for b, s, c in perfect()]
    assert coco_evaluate(ground_truth(), dets, NAMES, SIZE).map50 == pytest.approx(1.0)


def test_mismatched_lengths_raise_a_data_error():
    from convscope.errors import DataError

    with pytest.raises(DataError, match="one detections entry per ground-truth image"):
        coco_evaluate(ground_truth(), perfect()[:2], NAMES, SIZE)
    with pytest.raises(DataError, match=r"classes in \[0, 3\)"):
        coco_evaluate([(np.zeros((1, 4)), np.array([3]))], [(np.zeros((0, 4)), [], [])], NAMES, SIZE)


def test_pr_curve_png_is_written(tmp_path):
    dets = perfect()
    boxes, scores, classes = dets[0]
    dets[0] = (boxes[1:], scores[1:], classes[1:])
    m = coco_evaluate(ground_truth(), dets, NAMES, SIZE)
    assert isinstance(m, DetectionMetrics)
    path = plot_pr_curves(m, tmp_path / "pr.png", "validation, IoU 0.5")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
