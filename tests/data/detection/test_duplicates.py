"""The grid duplicate check (convscope.data.detection.duplicates) gives exactly what comparing every pair gave, and
the readers report its duplicates in file order, as before."""

import numpy as np
import pytest

from convscope.data.detection.boxes import DUPLICATE_IOU
from convscope.data.detection.duplicates import find_duplicates
from convscope.data.detection.yolo_labels import parse_labels


def _pairwise(xyxy: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The check the readers made before: each box against every kept box of its class (n²/2 IoUs)."""
    kept: list[tuple[np.ndarray, int, int]] = []
    earlier, ious = np.full(len(xyxy), -1), np.zeros(len(xyxy))
    for i, (box, cls) in enumerate(zip(xyxy, classes.tolist(), strict=True)):
        same = [(b, where) for b, c, where in kept if c == cls]
        if same:
            boxes = np.stack([b for b, _ in same])
            ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
            iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
            inter = ix * iy
            area = (box[2] - box[0]) * (box[3] - box[1])
            union = area + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
            values = inter / np.maximum(union, 1e-12)
            hits = np.flatnonzero(values > DUPLICATE_IOU)
            if hits.size:
                earlier[i], ious[i] = same[hits[0]][1], values[hits[0]]
                continue
        kept.append((box, cls, i))
    return earlier, ious


def _random_boxes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n boxes over 3 orders of magnitude of size, a third of them copies of others moved by up to a few percent."""
    corner = rng.uniform(0, 200, (n, 2))
    size = np.exp(rng.uniform(np.log(0.5), np.log(300), (n, 2)))
    xyxy = np.concatenate([corner, corner + size], axis=1)
    copies = rng.integers(0, n, n // 3)
    targets = rng.integers(0, n, n // 3)
    jitter = rng.choice([0.0, 0.001, 0.01, 0.03], n // 3)[:, None] * size[copies].repeat(2, axis=1)
    xyxy[targets] = xyxy[copies] + rng.normal(0, 1, (n // 3, 4)) * jitter
    classes = rng.integers(0, 3, n)
    same = rng.random(n // 3) < 0.8  # most copies keep their class
    classes[targets[same]] = classes[copies[same]]
    return xyxy, classes


@pytest.mark.parametrize("seed", range(40))
def test_grid_check_equals_the_pairwise_check_on_random_boxes(seed):
    rng = np.random.default_rng(seed)
    xyxy, classes = _random_boxes(rng, int(rng.integers(2, 300)))
    earlier, ious = find_duplicates(xyxy, classes)
    expected_earlier, expected_ious = _pairwise(xyxy, classes)
    assert earlier.tolist() == expected_earlier.tolist()
    assert ious.tolist() == expected_ious.tolist()  # bit for bit: the same arithmetic


def test_the_random_boxes_hold_duplicates_and_chains():
    found = [find_duplicates(*_random_boxes(np.random.default_rng(seed), 200))[0] for seed in range(5)]
    assert all((earlier >= 0).sum() >= 10 for earlier in found)


def test_boxes_at_octave_edges_and_negative_coordinates():
    # Widths 1.999… and 2.0 (two octaves), corners on both sides of 0: the IoU is over 0.95 for each pair.
    xyxy = np.array([[-1.0, -1.0, 0.999, 0.999], [-1.0, -1.0, 1.0, 1.0], [5.0, 5.0, 7.0, 7.0], [5.02, 5.0, 7.0, 7.0]])
    earlier, ious = find_duplicates(xyxy, np.zeros(4, int))
    assert earlier.tolist() == [-1, 0, -1, 2]
    assert ious[1] == pytest.approx(1.999**2 / 4) and ious[3] == pytest.approx(1.98 / 2)


def test_identical_boxes_of_other_classes_are_not_duplicates_and_empty_boxes_never_are():
    xyxy = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [3, 3, 3, 3], [3, 3, 3, 3], [0, 0, np.nan, 5]])
    earlier, _ = find_duplicates(xyxy, np.array([0, 1, 0, 0, 0, 0]))
    assert earlier.tolist() == [-1, -1, 0, -1, -1, -1]
    assert find_duplicates(np.zeros((0, 4)), [])[0].tolist() == []


def test_twenty_thousand_identical_boxes_are_one_box_and_its_duplicates():
    earlier, ious = find_duplicates(np.tile([10.0, 10.0, 50.0, 50.0], (20_000, 1)), np.zeros(20_000, int))
    assert earlier[0] == -1 and (earlier[1:] == 0).all() and (ious[1:] == 1.0).all()


def test_yolo_duplicates_keep_their_place_among_the_other_problems():
    text = "0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n0 0.2 0.2 0.1 0.1\n"
    rows, problems, _ = parse_labels(text, "a.txt", 1, 100.0, 100.0, None)
    assert [(p.line, p.kind) for p in problems] == [(2, "duplicate"), (3, "class"), (4, "duplicate")]
    assert str(problems[0]) == "a.txt, line 2: duplicate of line 1 (IoU 1.00)"
    assert [cls for _, cls in rows] == [0, 0] and rows[1][0].tolist() == pytest.approx([0.15, 0.15, 0.25, 0.25])
