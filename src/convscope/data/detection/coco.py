"""COCO detection datasets: an annotations JSON (images, annotations, categories) and the folder of its images.

`load_coco` reads them into one `DetectionSplit` letterboxed to S×S, with the class names; category ids map to 0..K-1
in sorted id order, less a category with no annotation that is the supercategory of all the others (Roboflow's export
adds the dataset's name so; logged). Crowd annotations (`iscrowd` 1) are not training targets: they go to
`split.crowds`, the ignore regions of scoring (as pycocotools treats them). `lint_coco` only lists the problems;
`read_coco_raw` gives every image's boxes in its own pixels (for `convscope detect convert`). A COCO source may also be
a folder of split JSONs, each with its images, or split folders each with its JSON: coco_folders.py finds and reads
those. An image's `file_name` is a path in the images folder; when no file has it exactly, the one file of that
folder whose name differs only in case is read (a.jpg in the JSON, a.JPG on disk; two such and none exact: a problem,
kind "missing"). Decoding, reading text files and the lint's conventions are the
reading kit's (convscope.data.detection.reading).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from convscope import userfiles
from convscope.data.detection.boxes import (
    EDGE_SLACK,
    DetectionSplit,
    LabelProblem,
    RawImage,
    echo,
    letterbox,
    lint_summary,
)
from convscope.data.detection.reading import (
    CaseFinder,
    ImageResult,
    check_image_size,
    compact,
    decode_image,
    duplicate_problems,
    each_image,
    no_training_data,
    raw_images,
    to_boxes,
    too_many_boxes,
)
from convscope.errors import DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _CocoImage:
    id: object
    file_name: str
    width: float | None  # as the JSON says; None when it does not
    height: float | None


@dataclass(frozen=True)
class _CocoBox:
    id: str  # the annotation id as messages name it (_named)
    cls: int
    xywh: tuple[float, float, float, float]  # pixels of the original image
    crowd: bool = False  # iscrowd: an ignore region for scoring, not a training target


def _read_json(path: Path) -> dict:
    # Up to 2 GiB, nesting bounded before it is parsed: one line naming the file otherwise (convscope.userfiles).
    doc = userfiles.read_json(path, max_bytes=userfiles.MAX_JSON_BYTES, what="COCO annotations JSON")
    if not isinstance(doc, dict):
        raise DataError(f"{path}: expected a JSON object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise DataError(f"{path}: expected a list under {key!r}, found {type(doc.get(key)).__name__}")
    return doc


def _is_id(value: object) -> bool:
    return isinstance(value, int | str) and not isinstance(value, bool)


def _named(value: object) -> str:
    """An id (image, annotation, category) as messages name it: as written, or echo's cut of a long one."""
    return str(value) if isinstance(value, int | str) and len(echo(value)) <= 40 else echo(value)


def _finite(value: int | float) -> bool:
    """A JSON number that is a finite float: not Infinity, NaN, or an int past float's range (a 400-digit one)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _sized(value: int | float) -> str:
    """A width or height the JSON says, as messages show it ('640', '1e+400' is no float: echo's cut)."""
    return f"{value:g}" if _finite(value) else echo(value)


def _coco_categories(doc: dict, path: Path, keep_parent: bool) -> tuple[tuple[str, ...], dict[object, int]]:
    """Class names in sorted category-id order, and category id → index 0..K-1 (Roboflow's parent category left out
    unless `keep_parent`)."""
    names: dict[int, str] = {}
    for i, category in enumerate(doc["categories"]):
        cid = category.get("id") if isinstance(category, dict) else None
        if not isinstance(cid, int) or isinstance(cid, bool):
            raise DataError(f"{path}: categories[{i}]: expected an integer id, found {echo(cid, 40)}")
        if cid in names:
            raise DataError(f"{path}: categories[{i}]: id {_named(cid)} appears twice")
        names[cid] = str(category.get("name", cid))
    if not names:
        raise DataError(f"{path}: expected at least one category, found none")
    if not keep_parent:
        _drop_parent_category(doc, path, names)
    ids = sorted(names)
    return tuple(names[i] for i in ids), {cid: index for index, cid in enumerate(ids)}


def _drop_parent_category(doc: dict, path: Path, names: dict[int, str]) -> None:
    """Leave out (of `names`, category id → name) a category with no annotation that is the supercategory of every
    other: Roboflow's COCO export lists the dataset's name so (id 0, supercategory "none"; its classes have that
    name as supercategory), and its other exports (YOLO's data.yaml) leave it out. Logged."""
    if len(names) < 2:
        return
    parents = {c["id"]: c.get("supercategory") for c in doc["categories"] if c["id"] in names}
    used = {ann.get("category_id") for ann in doc["annotations"] if isinstance(ann, dict)}
    for cid, name in names.items():
        if cid not in used and all(parents[other] == name for other in names if other != cid):
            log.info(
                "%s: category %s (id %s) has no annotation and is the supercategory of all the others: left out of "
                "the classes (as Roboflow's exports leave it out)",
                path,
                echo(name, 40),
                cid,
            )
            del names[cid]
            return


def _coco_images(doc: dict, path: Path, problems: list[LabelProblem]) -> list[_CocoImage]:
    shown = str(path)
    images, seen = [], set()
    for i, entry in enumerate(doc["images"]):
        iid = entry.get("id") if isinstance(entry, dict) else None
        name = entry.get("file_name") if isinstance(entry, dict) else None
        if not _is_id(iid) or not isinstance(name, str) or not name:
            problems.append(LabelProblem(shown, None, f"images[{i}]: expected an id and a file_name, skipped", "entry"))
            continue
        if iid in seen:
            problems.append(
                LabelProblem(shown, None, f"image {_named(iid)} appears twice; the later entry is ignored", "entry")
            )
            continue
        relative = PurePosixPath(name.replace("\\", "/"))
        if relative.is_absolute() or ".." in relative.parts:
            why = f"image {_named(iid)}: file name {echo(name, 60)} points outside the images folder, skipped"
            problems.append(LabelProblem(shown, None, why, "entry"))
            continue
        seen.add(iid)
        w, h = entry.get("width"), entry.get("height")
        sizes = [v if isinstance(v, int | float) and not isinstance(v, bool) else None for v in (w, h)]
        images.append(_CocoImage(iid, relative.as_posix(), *sizes))
    return images


def _coco_boxes(
    doc: dict, path: Path, image_ids: set, category_index: dict[object, int], problems: list[LabelProblem]
) -> dict[object, list[_CocoBox]]:
    """image id → its annotations (file order); annotations that cannot be used become problems."""
    shown = str(path)
    per_image: dict[object, list[_CocoBox]] = {}
    for i, ann in enumerate(doc["annotations"]):
        if not isinstance(ann, dict):
            problems.append(LabelProblem(shown, None, f"annotations[{i}]: expected an object", "entry"))
            continue
        aid = ann.get("id", f"#{i}")
        where = f"annotation {_named(aid)}"
        bbox = ann.get("bbox")
        numbers = bbox if isinstance(bbox, list) and len(bbox) == 4 else None
        if numbers is None or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in numbers):
            why = f"{where}: expected bbox [x, y, w, h], found {echo(bbox, 60)}"
            problems.append(LabelProblem(shown, None, why, "entry"))
            continue
        if not all(_finite(v) for v in numbers):
            written = ", ".join(echo(v) for v in numbers)
            problems.append(LabelProblem(shown, None, f"{where}: bbox [{written}] is not a finite number", "number"))
            continue
        if not _is_id(ann.get("image_id")) or ann["image_id"] not in image_ids:
            why = f"{where}: image_id {echo(ann.get('image_id'), 40)} is not among the usable images"
            problems.append(LabelProblem(shown, None, why, "unknown-image"))
            continue
        if not _is_id(ann.get("category_id")) or ann["category_id"] not in category_index:
            why = f"{where}: category_id {echo(ann.get('category_id'), 40)} is not in categories"
            problems.append(LabelProblem(shown, None, why, "class"))
            continue
        crowd = bool(ann.get("iscrowd"))
        box = _CocoBox(_named(aid), category_index[ann["category_id"]], tuple(float(v) for v in numbers), crowd)
        per_image.setdefault(ann["image_id"], []).append(box)
    return per_image


def _check_coco_box(box: _CocoBox, width: int, height: int, scale: float) -> tuple[str, str] | None:
    """(kind, message) of what is wrong with one annotation on a width×height image, or None.

    A crowd region may be under 1 pixel after resizing (it only tells scoring what to ignore)."""
    x, y, w, h = box.xywh
    where = f"annotation {box.id}"
    if w <= 0 or h <= 0:
        return "size", f"{where}: zero-size box (w {w:g}, h {h:g})"
    # The same tolerance as YOLO's normalised coordinates: 1e-6 of the image side.
    if (
        x < -EDGE_SLACK * width
        or y < -EDGE_SLACK * height
        or x + w > width * (1 + EDGE_SLACK)
        or (y + h > height * (1 + EDGE_SLACK))
    ):
        return "outside", f"{where}: bbox [{x:g}, {y:g}, {w:g}, {h:g}] outside the {width}×{height} image"
    if not box.crowd and (w * scale < 1 or h * scale < 1):
        return "size", f"{where}: box under 1 pixel after resizing ({w * scale:.2f}×{h * scale:.2f} px)"
    return None


def _read_coco_image(
    entry: _CocoImage,
    boxes: list[_CocoBox],
    finder: CaseFinder,
    json_shown: str,
    image_size: int | None,
    out: np.ndarray | None,
    index: int,
) -> ImageResult:
    """Decode one image and check its annotations (crowds apart); with image_size, the letterboxed pixels go to
    out[index] (when out is given) and the boxes follow them, else the boxes stay in the image's own pixels."""
    image_path, same = finder.find(entry.file_name)
    shown = str(image_path or finder.root / entry.file_name)
    if (problem := too_many_boxes(shown, len(boxes), "annotations")) is not None:
        return ImageResult(None, [problem])
    if image_path is None:
        names = ", ".join(path.name for path in same)
        found = f"{len(same)} files differing from it only in case ({names})" if same else "no such file"
        why = f"image {_named(entry.id)}: {found}, skipped with its {len(boxes)} annotation(s)"
        return ImageResult(None, [LabelProblem(shown, None, why, "missing")])
    try:
        array = decode_image(image_path)
    except DataError as err:
        return ImageResult(None, [LabelProblem(shown, None, f"unreadable image, skipped: {err}", "unreadable")])
    height, width = array.shape[:2]
    if entry.width is not None and entry.height is not None and (entry.width, entry.height) != (width, height):
        said = f"{_sized(entry.width)}×{_sized(entry.height)}"
        why = f"image {_named(entry.id)} is {width}×{height} but the JSON says {said}; skipped"
        return ImageResult(None, [LabelProblem(shown, None, why, "image-size")])
    scale, pad = 1.0, (0, 0)
    if image_size is not None:
        array, scale, pad = letterbox(array, image_size)
        if out is not None:
            out[index] = array
    slots: list[LabelProblem | None] = []  # one per annotation: its problem, in file order
    crowds, candidates = [], []  # (xyxy, class), and (xyxy, class, (annotation id, slot)) of the targets
    for box in boxes:
        wrong = _check_coco_box(box, width, height, scale)
        slots.append(None if wrong is None else LabelProblem(json_shown, None, wrong[1], wrong[0]))
        if wrong is not None:
            continue
        x, y, w, h = box.xywh
        xyxy = np.clip(np.array([x, y, x + w, y + h]), 0, [width, height, width, height])
        if box.crowd:
            crowds.append((xyxy, box.cls))
        else:
            candidates.append((xyxy, box.cls, (box.id, len(slots) - 1)))

    def duplicate(where, earlier, iou) -> tuple[int, LabelProblem]:
        why = f"annotation {where[0]}: duplicate of annotation {earlier[0]} (IoU {iou:.2f})"
        return where[1], LabelProblem(json_shown, None, why, "duplicate")

    kept, duplicates = duplicate_problems(candidates, duplicate)
    for _, (slot, problem) in duplicates:
        slots[slot] = problem
    problems = [problem for problem in slots if problem is not None]
    rows = [candidates[i][:2] for i in kept]
    size = float(image_size if image_size is not None else max(width, height))
    targets, regions = to_boxes(rows, (scale, scale), pad, size), to_boxes(crowds, (scale, scale), pad, size)
    return ImageResult(targets, problems, crowds=regions, size=(width, height))


def load_coco(
    annotations: str | Path, images_dir: str | Path, image_size: int, *, hint: str | None = None, keep_parent=False
) -> tuple[DetectionSplit, tuple[str, ...]]:
    """A COCO detection JSON and its images as one split letterboxed to image_size, and the class names.

    Category ids (any integers) map to 0..K-1 in sorted id order (less Roboflow's supercategory entry: the module
    docstring; with `keep_parent`, kept). Crowd annotations go to `split.crowds` (one Boxes per image, when the JSON
    has any), not to the targets. Problems (reported with the annotation id) are in `split.problems`; a DataError
    when no image with a usable box is left, or (with `hint`, ending it) when none of the JSON's images is in
    images_dir.
    """
    check_image_size(image_size)
    annotations, images_dir = Path(annotations), Path(images_dir)
    classes, entries, results, problems, out = _read_coco(annotations, images_dir, image_size, True, hint, keep_parent)
    images, kept = compact(out, results)
    if not any(len(results[i].boxes) for i in kept):
        raise no_training_data(annotations, problems, f"{len(kept)} usable image(s), none with a usable box")
    if problems:
        log.warning("%s: %d annotation problem(s): %s", annotations, len(problems), lint_summary(problems))
    targets = tuple(results[i].boxes for i in kept)
    crowds = tuple(results[i].crowds for i in kept)
    if regions := sum(len(c) for c in crowds):
        log.info(
            "%s: %d crowd region(s) kept as ignore regions for scoring, not as training targets", annotations, regions
        )
    else:
        crowds = ()
    split = DetectionSplit(images, targets, tuple(entries[i].file_name for i in kept), tuple(problems), crowds)
    return split, classes


def _read_coco(annotations: Path, images_dir: Path, image_size: int | None, keep_images: bool, hint, keep_parent):
    """(classes, image entries, a result per entry, problems, the letterboxed images when kept, else None).
    With `hint`, a DataError ending with it when none of the JSON's images is in images_dir."""
    if not images_dir.is_dir():
        found = "a file" if images_dir.exists() else "nothing"
        raise DataError(f"{images_dir}: expected the folder of the COCO images, found {found}")
    doc = _read_json(annotations)
    problems: list[LabelProblem] = []
    classes, category_index = _coco_categories(doc, annotations, keep_parent)
    entries = _coco_images(doc, annotations, problems)
    per_image = _coco_boxes(doc, annotations, {e.id for e in entries}, category_index, problems)
    finder = CaseFinder(images_dir)
    if hint and entries and not any(finder.find(entry.file_name)[0] is not None for entry in entries):
        first = echo(entries[0].file_name, 60)
        raise DataError(
            f"{annotations}: none of its {len(entries)} images is in {images_dir}/ (first: {first}); {hint}"
        )
    out = None
    if keep_images and image_size is not None:
        out = np.empty((len(entries), image_size, image_size, 3), dtype=np.uint8)  # filled in place

    def read(index: int) -> ImageResult:
        entry = entries[index]
        boxes = per_image.get(entry.id, [])
        return _read_coco_image(entry, boxes, finder, str(annotations), image_size, out, index)

    results = each_image(read, len(entries))
    problems += [problem for result in results for problem in result.problems]
    return classes, entries, results, problems, out


def read_coco_raw(
    annotations: str | Path, images_dir: str | Path, *, hint: str | None = None, keep_parent: bool = False
) -> tuple[tuple[str, ...], tuple[RawImage, ...], list[LabelProblem]]:
    """A COCO detection JSON's images with their boxes in their own pixels (x1, y1, x2, y2 float32, pixel i covering
    [i, i+1)); crowd annotations as ignore regions. Returns (class names in sorted category-id order, the readable
    images, every problem), after the same lint as load_coco. A DataError when the JSON or the folder is unusable, or
    as load_coco with `hint`."""
    annotations, images_dir = Path(annotations), Path(images_dir)
    classes, entries, results, problems, _ = _read_coco(annotations, images_dir, None, False, hint, keep_parent)
    finder = CaseFinder(images_dir)  # the files read, as _read_coco found them
    paths = [finder.find(entry.file_name)[0] or images_dir / entry.file_name for entry in entries]
    return classes, raw_images(paths, [entry.file_name for entry in entries], results), problems


def lint_coco(
    annotations: str | Path, images_dir: str | Path, image_size: int | None = None, *, hint: str | None = None
) -> list[LabelProblem]:
    """Every problem of a COCO detection JSON and its images (decoded, not kept), as load_coco finds them; with
    `image_size`, the 1-pixel check uses the letterboxed size. No image with a usable box (which training refuses) is
    a problem of kind "no-box", last. A DataError when the JSON or the folder cannot be read at all, or as load_coco
    with `hint`."""
    if image_size is not None:
        check_image_size(image_size)
    annotations, images_dir = Path(annotations), Path(images_dir)
    _, _, results, problems, _ = _read_coco(annotations, images_dir, image_size, False, hint, False)
    if not any(result.boxes is not None and len(result.boxes) for result in results):
        why = "no image with a usable box: training would be refused"
        problems.append(LabelProblem(str(annotations), None, why, "no-box"))
    return problems


def coco_json_images(json_path: Path, data_dir: str | Path | None) -> Path:
    """The image folder of a COCO JSON read on its own: `data_dir` when given, else images/ beside the JSON when
    there is one, else the JSON's own folder (Roboflow's train/_annotations.coco.json, its images beside it)."""
    if data_dir:
        return Path(data_dir)
    return json_path.parent / "images" if (json_path.parent / "images").is_dir() else json_path.parent
