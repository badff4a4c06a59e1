"""Using a trained detector: evaluate it on a dataset's test split (COCO mAP), and find objects in image files."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from convscope.classify.predict import image_paths
from convscope.data.detection.boxes import letterbox
from convscope.data.images import describe, open_image, to_array
from convscope.detect.decoding import decode, detector_maps
from convscope.detect.draw import draw_detections
from convscope.detect.evaluate import flips_at_test
from convscope.errors import ConvscopeError
from convscope.layers import split_outputs
from convscope.loaded import LoadedRun, load
from convscope.out_paths import check_file_in_folder
from convscope.run import Run, load_run
from convscope.show import save_image


@dataclass(frozen=True)
class Found:
    """The objects found in one image file, best score first.

    boxes: n×4 float, (x1, y1, x2, y2) in pixels of the image as it is displayed (EXIF orientation applied, pixel i
    covering [i, i+1)); scores: n in [0, 1]; labels: n class names; same_as: n int, -1 for a box that is drawn,
    else the index of the higher-scoring box it was judged the same object as (IoU ≥ SAME_OBJECT_IOU), which is
    drawn in its place. Without `all_classes` such boxes are left out and only counted in `suppressed`.
    size: (width, height) of the image as displayed; picture: the file with the boxes drawn, when one was written.
    """

    path: Path
    conversion: str
    boxes: np.ndarray  # n×4 float
    scores: np.ndarray  # n
    labels: tuple[str, ...]
    picture: Path | None = None
    error: str | None = None
    same_as: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # n int, -1 = drawn
    suppressed: int = 0  # boxes left out as the same object as a better one (only without all_classes)
    size: tuple[int, int] = (0, 0)
    classes: tuple[str, ...] = ()  # the run's class names, whose order gives each class its colour in pictures

    def __repr__(self) -> str:
        if self.error:
            return f"Found({str(self.path)!r}: {self.error})"
        drawn = [f"{k} {s:.2f}" for k, s, same in zip(self.labels, self.scores, self._same(), strict=True) if same < 0]
        return f"Found({str(self.path)!r}: {', '.join(drawn) or 'nothing'})"

    def picture_image(self):
        """The image with its drawn boxes (as the saved picture draws them), a PIL image; None for an error."""
        if self.error:
            return None
        names = self.classes or tuple(dict.fromkeys(self.labels))
        drawn = self.same_as < 0 if len(self.same_as) == len(self.boxes) else np.ones(len(self.boxes), bool)
        index = np.array([names.index(label) for label in self.labels], dtype=np.int64)
        array = to_array(open_image(self.path), 3)
        return draw_detections(array, self.boxes[drawn], self.scores[drawn], index[drawn], names)

    def _repr_png_(self) -> bytes | None:
        """The picture with the boxes, for a notebook."""
        image = self.picture_image()
        if image is None:
            return None
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    def to_dict(self) -> dict:
        """The JSON entry of `detect predict --json`: image, size [w, h], objects (label, score, box [x1, y1, x2,
        y2] in the image's pixels, drawn, and for a box not drawn same_object_as: the index of the one drawn),
        suppressed (how many boxes were left out as duplicates), picture; or image and error."""
        if self.error:
            return {"image": str(self.path), "error": self.error}
        objects = []
        for box, s, label, same in zip(self.boxes, self.scores, self.labels, self._same(), strict=True):
            entry = {"label": label, "score": round(float(s), 4), "box": [round(float(v), 1) for v in box]}
            objects.append({**entry, "drawn": bool(same < 0), **({"same_object_as": int(same)} if same >= 0 else {})})
        picture = str(self.picture) if self.picture else None
        return {"image": str(self.path), "size": list(self.size), "objects": objects,
                "suppressed": self.suppressed, "picture": picture}  # fmt: skip

    def text_lines(self) -> list[str]:
        """What `detect predict` prints for the image: a line naming the image, its size, the count and the picture,
        then one indented line per object, 'Bag 0.97 at x 1250–2100, y 400–1390' (whole pixels of the image)."""
        if self.error:
            return [f"{self.path}: cannot read: {self.error}"]
        same = self._same()
        drawn = int((same < 0).sum())
        head = f"{self.path} ({self.conversion}): " + (f"{drawn} object{'s' * (drawn != 1)}" if drawn else "nothing")
        if self.suppressed:
            head += f" (+{self.suppressed} more box(es) on objects already listed; --all-classes lists them)"
        lines = [head + (f" → {self.picture}" if self.picture else "")]
        for box, s, label, k in zip(self.boxes, self.scores, self.labels, same, strict=True):
            x1, y1, x2, y2 = (round(float(v)) for v in box)
            line = f"  {label} {s:.2f} at x {x1}–{x2}, y {y1}–{y2}"
            if k >= 0:
                line += f"  (not drawn: the same object as {self.labels[k]} {self.scores[k]:.2f})"
            lines.append(line)
        return lines

    def _same(self) -> np.ndarray:
        return self.same_as if len(self.same_as) == len(self.scores) else np.full(len(self.scores), -1)


SAME_OBJECT_IOU = 0.7  # boxes overlapping this much are one object (Ultralytics' default NMS IoU is 0.7 too)
PICTURE_JPEG_QUALITY = 90


@torch.inference_mode()
def detect_images(
    run: LoadedRun | Run | str | Path,
    items: list[str],
    min_score: float = 0.3,
    out: str | Path | None = None,
    all_classes: bool = False,
    device: str = "auto",
    overwrite: bool = False,
) -> list[Found]:
    """Objects in image files, folders or sample-photo names, as one Found per image (in the order given).

    Each image is turned upright (EXIF orientation), letterboxed to the model's input as in training, and the boxes
    mapped back exactly to its own pixels (`to_image_pixels`); boxes with a score below `min_score` are dropped.
    The head finds a peak per class, so one object can get boxes of two classes (a shirt that is half a coat): a
    box that overlaps a higher-scoring box of any class with IoU ≥ SAME_OBJECT_IOU is the same object
    (`same_object_as`, class-agnostic as Ultralytics' agnostic_nms). Such boxes are never drawn; they are left out
    of the Found too, only counted (`suppressed`), unless `all_classes` is true: then they are listed, each with
    `same_as` naming the box drawn in its place. (Evaluation keeps every class's boxes, as COCO mAP expects.)

    With `out` (a folder, made if needed), a picture per image with the drawn boxes (see convscope.detect.draw: longer
    side at most 2000 px, labels scaled to it) is written atomically as NAME-detections.jpg (JPEG quality 90) when the
    image is a .jpg/.jpeg file, a photo whose PNG would be ten times larger, else NAME-detections.png (exact pixels for
    scenes, drawings and screenshots), with convscope's mark; an existing file of that name that convscope did not write
    is refused before any image is read, unless `overwrite`. An unreadable file is reported in its Found.error and the
    others are still processed. The network runs on `device`, or where `run` is loaded when it is a LoadedRun
    (convscope.Run and the studio keep one). Raises SpecError when `run` is not a detector, CheckpointError when it
    cannot be loaded, DataError when an item names no image, OutputError when a picture cannot be written, ConfigError
    for a device this machine lacks.
    """
    loaded = run if isinstance(run, LoadedRun) else None
    run = load_run(loaded.run if loaded else run)
    loaded = loaded or load(run, device)
    size = run.spec.input[0]
    paths = image_paths(items)
    if out is not None:  # every picture's place checked before any image is read: a user's file is never replaced
        for path in paths:
            check_file_in_folder(_picture_path(out, path), overwrite, ("detections/*",), own_run=run.path)
    results = []
    for path in paths:
        try:
            img = open_image(path)
        except ConvscopeError as err:
            results.append(Found(path, "", np.zeros((0, 4)), np.zeros(0), (), error=str(err)))
            continue
        array = to_array(img, 3)  # H×W×3 uint8, upright
        [(boxes, scores, classes)] = boxes_in_images(loaded, [array])
        keep = scores >= min_score
        boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
        same = same_object_as(boxes, scores)
        suppressed = int((same >= 0).sum())
        if not all_classes:
            boxes, scores, classes, same = boxes[same < 0], scores[same < 0], classes[same < 0], same[same < 0]
        picture = None
        if out is not None:
            drawn = same < 0
            picture = _picture_path(out, path)
            image = draw_detections(array, boxes[drawn], scores[drawn], classes[drawn], run.data.classes)
            options = {"quality": PICTURE_JPEG_QUALITY} if picture.suffix == ".jpg" else {}
            save_image(image, picture, **options)  # atomic, with convscope's mark (a rerun replaces it silently)
        labels = tuple(run.data.classes[int(k)] for k in classes)
        conversion = f"{describe(img)} → letterboxed to {size}×{size}"
        suppressed = 0 if all_classes else suppressed
        results.append(
            Found(
                path,
                conversion,
                boxes,
                scores,
                labels,
                picture,
                same_as=same,
                suppressed=suppressed,
                size=img.size,
                classes=run.data.classes,
            )
        )
    return results


@torch.inference_mode()
def boxes_in_images(loaded: LoadedRun, arrays: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Every box the detector's decoder keeps for each upright uint8 H×W×3 image, in one batch: (boxes n×4 in the
    image's own pixels, scores n, class indices n) per image. Each image is letterboxed to the model's input as in
    training and its boxes mapped back (`to_image_pixels`); averaged with the mirror image when the run was trained
    on mirrors (as evaluated)."""
    head, size = loaded.run.spec.layers[-1], loaded.run.spec.input[0]
    boxed = [letterbox(array, size) for array in arrays]
    maps = detector_maps(
        loaded.fused, loaded.tensor(np.stack([b for b, _, _ in boxed])), flips_at_test(loaded.run.config)
    )
    found = []
    for array, (_, scale, pad), (boxes, scores, classes) in zip(
        arrays, boxed, decode(*split_outputs(maps, head.classes), stride=head.stride), strict=True
    ):
        size_wh = (array.shape[1], array.shape[0])
        found.append(
            (
                to_image_pixels(boxes.float().cpu().numpy(), scale, pad, size_wh),
                scores.float().cpu().numpy(),
                classes.cpu().numpy(),
            )
        )
    return found


def to_image_pixels(boxes: np.ndarray, scale: float, pad: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Boxes n×4 (x1, y1, x2, y2) in pixels of the letterboxed input → pixels of the image it was made from.

    Inverts `letterbox`'s x' = x·scale + pad_x, y' = y·scale + pad_y exactly: x = (x' − pad_x) / scale; then clips
    to the image, size = (width, height), as a box reaching into the gray bands ends at the image's edge.
    A 4000×3000 photo letterboxed to 128: scale 0.032, pad (0, 16), so x' = 64 → x = 2000 and y' = 16 → y = 0.
    """
    pad_x, pad_y = pad
    width, height = size
    mapped = (np.asarray(boxes, dtype=np.float64).reshape(-1, 4) - [pad_x, pad_y, pad_x, pad_y]) / scale
    return mapped.clip(0, [width, height, width, height])


def same_object_as(boxes: np.ndarray, scores: np.ndarray, iou: float = SAME_OBJECT_IOU) -> np.ndarray:
    """Class-agnostic suppression: n int, -1 for a box to keep, else the index of the kept box it is the same
    object as.

    boxes n×4 xyxy (any unit), scores n. Greedy by score, as NMS: a box is kept unless it overlaps an already kept,
    higher-scoring box with IoU ≥ `iou` (then it points at the best such box). Ties keep the earlier box.
    """
    n = len(boxes)
    same = np.full(n, -1, dtype=np.int64)
    if n < 2:
        return same
    overlap = _pairwise_iou(np.asarray(boxes, dtype=np.float64))
    kept: list[int] = []
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        hit = next((j for j in kept if overlap[i, j] >= iou), None)
        if hit is None:
            kept.append(int(i))
        else:
            same[i] = hit
    return same


def _pairwise_iou(boxes: np.ndarray) -> np.ndarray:
    """n×4 xyxy → n×n IoU (0 between boxes without area)."""
    lo = np.maximum(boxes[:, None, :2], boxes[None, :, :2])
    hi = np.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (hi - lo).clip(0).prod(axis=-1)
    area = (boxes[:, 2:] - boxes[:, :2]).clip(0).prod(axis=-1)
    return inter / np.maximum(area[:, None] + area[None, :] - inter, 1e-12)


def _picture_path(out: str | Path, image: Path) -> Path:
    """NAME-detections.jpg for a JPEG photo (its PNG would be ten times larger), else NAME-detections.png."""
    jpeg = image.suffix.lower() in (".jpg", ".jpeg")
    return Path(out) / f"{image.stem}-detections.{'jpg' if jpeg else 'png'}"
