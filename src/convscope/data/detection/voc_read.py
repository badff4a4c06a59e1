"""Reading a Pascal VOC layout — which XML files make each split, and where each split's XML files and images are —
into loaded, linted or raw data: what the VOC folder (convscope.data.detection.voc) and the VOC split folders
(convscope.data.detection.voc_folders) share.

A `VocLayout` says, per split, its XML files and the folders of its annotations and images (one pair for a VOC folder,
one per split for split folders); every problem names its path relative to the layout's `root`. An XML file's image is
the one its `<filename>` names (case and extension may differ: `a.JPG` finds a.jpg, or a.png when that is the only
`a`), else the one with the XML file's own stem; when both exist and differ (a LabelImg XML copied and renamed,
`<filename>` left as it was), the image with the XML file's own stem wins, as LabelImg pairs them (it opens STEM.xml
for STEM.jpg), with a problem of kind "filename" naming both. A second XML file labelling the same image is skipped
(kind "claimed", naming both). Classes are the layout's class list (convscope.data.detection.class_lists), else the
sorted names found over every split. Coordinates, the checks of each object and the safe parsing are in voc_xml.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from convscope.data.detection.boxes import (
    DetectionDataset,
    DetectionSplit,
    LabelProblem,
    RawDataset,
    echo,
    letterbox,
)
from convscope.data.detection.reading import (
    ImageResult,
    compact,
    decode_image,
    duplicate_problems,
    each_image,
    loaded_dataset,
    no_training_data,
    raw_images,
    shown_path,
    to_boxes,
)
from convscope.data.detection.voc_xml import VocFile, check_object, parse_xml, size_problem
from convscope.data.folder import image_files
from convscope.errors import DataError

log = logging.getLogger("convscope.data.detection.voc")


@dataclass(frozen=True)
class VocLayout:
    root: Path  # the dataset folder: problems name paths relative to it
    classes: tuple[str, ...] | None  # from classes.txt / labels.txt, else None (the names found)
    splits: dict[str, list[Path]]  # split name → its XML files, in order ("train" always there)
    folders: dict[str, tuple[Path, Path]]  # split name → (its annotations folder, its images folder)
    problems: list[LabelProblem]  # found while laying it out (ImageSets entries without an XML file)


class ImageFinder:
    """Images of one folder by name, case ignored; by stem when the extension differs."""

    def __init__(self, folder: Path) -> None:
        files = image_files(folder)  # sorted: the first of a.jpg, a.png wins a stem
        self.exact = {path.name: path for path in files}
        self.by_name, self.by_stem = {}, {}
        for path in files:
            self.by_name.setdefault(path.name.lower(), path)
            self.by_stem.setdefault(path.stem.lower(), path)

    def named(self, filename: str | None) -> Path | None:
        """The image a `<filename>` names (case and extension may differ), or None."""
        if not filename:
            return None
        name = PurePosixPath(filename.replace("\\", "/")).name  # only a name: never a path out of the folder
        found = self.exact.get(name) or self.by_name.get(name.lower())
        return found or self.by_stem.get(PurePosixPath(name).stem.lower())

    def own(self, xml: Path) -> Path | None:
        """The image with the XML file's own stem, or None."""
        return self.by_stem.get(xml.stem.lower())


def xml_files(annotations: Path) -> list[Path]:
    """The .xml files of a folder (any case, hidden ones left out), sorted."""
    return sorted(p for p in annotations.iterdir() if p.suffix.lower() == ".xml" and not p.name.startswith("."))


def image_of(file: VocFile, finder: ImageFinder, root: Path, images: Path) -> tuple[Path | None, list[LabelProblem]]:
    """The image of one XML file (module docstring: its own stem wins over a `<filename>` naming another image,
    a problem of kind "filename" naming both), and its problems; None with a "missing" problem when there is none."""
    named, own = finder.named(file.filename), finder.own(file.xml)
    if named is not None and own is not None and named != own:
        why = (
            f"<filename> {echo(file.filename, 60)} names {shown_path(named, root)}, another image; read as the "
            f"labels of {shown_path(own, root)}, the image with the XML file's own name"
        )
        return own, [LabelProblem(file.shown, None, why, "filename")]
    if (path := named or own) is None:
        why = f"image {echo(file.filename or file.xml.stem, 60)} not found in {shown_path(images, root)}/, skipped"
        return None, [LabelProblem(file.shown, None, why, "missing")]
    return path, []


def _read_voc_image(
    file: VocFile,
    found: tuple[Path | None, list[LabelProblem]],
    root: Path,
    classes: dict[str, int],
    image_size: int | None,
    out: np.ndarray | None,
    index: int,
) -> tuple[ImageResult, Path | None]:
    """Decode one XML file's image (`found`: its path or None, and the problems of finding it) and check its
    objects; with image_size, the letterboxed pixels go to out[index] (when out is given) and the boxes follow
    them, else the boxes stay in the image's own pixels. root: the dataset folder (paths in problems)."""
    path, problems = found
    if path is None:
        return ImageResult(None, problems), None
    shown_image = shown_path(path, root)
    try:
        array = decode_image(path)
    except DataError as err:
        problem = LabelProblem(shown_image, None, f"unreadable image, skipped: {err}", "unreadable")
        return ImageResult(None, [*problems, problem]), path
    height, width = array.shape[:2]
    problems = problems + [p for p in [size_problem(file, shown_image, width, height)] if p is not None]
    scale, pad = 1.0, (0, 0)
    if image_size is not None:
        array, scale, pad = letterbox(array, image_size)
        if out is not None:
            out[index] = array
    slots: list[LabelProblem | None] = []  # one per object: its problem, in file order
    ignore, clipped, candidates = [], [], []  # candidates: (xyxy, class, (object, slot)) of the targets
    for obj in file.objects:
        first, *rest = check_object(obj, classes, width, height, scale)
        slots.append(LabelProblem(file.shown, obj.line, rest[0], first) if isinstance(first, str) else None)
        if isinstance(first, str):
            continue
        xyxy, was_clipped = rest
        if was_clipped:
            clipped.append((file.shown, obj.line))
        if obj.difficult:
            ignore.append((xyxy, first))
        else:
            candidates.append((xyxy, first, (obj, len(slots) - 1)))

    def duplicate(where, earlier, iou) -> tuple[int, LabelProblem]:
        why = f"{where[0].where}: duplicate of object {earlier[0].number} (IoU {iou:.2f})"
        return where[1], LabelProblem(file.shown, where[0].line, why, "duplicate")

    kept, duplicates = duplicate_problems(candidates, duplicate)
    for _, (slot, problem) in duplicates:
        slots[slot] = problem
    problems += [problem for problem in slots if problem is not None]
    rows = [candidates[i][:2] for i in kept]
    size = float(image_size if image_size is not None else max(width, height))
    targets, regions = to_boxes(rows, (scale, scale), pad, size), to_boxes(ignore, (scale, scale), pad, size)
    return ImageResult(targets, problems, crowds=regions, size=(width, height), clipped=clipped), path


@dataclass
class _Read:
    classes: tuple[str, ...]
    splits: dict[str, tuple[list[ImageResult], list[Path | None], list[str]]]  # results, image paths, names
    problems: list[LabelProblem]  # every split's, in split order, then the clipping note
    out: dict[str, np.ndarray]  # split → its letterboxed images (when kept)


def _parse(layout: VocLayout) -> tuple[dict[Path, VocFile | LabelProblem], tuple[str, ...]]:
    """Every XML file of the layout parsed (or its problem), and the classes: the class list, else the names found."""
    xmls = list(dict.fromkeys(xml for files in layout.splits.values() for xml in files))
    parsed = dict(
        zip(xmls, each_image(lambda i: parse_xml(xmls[i], shown_path(xmls[i], layout.root)), len(xmls)), strict=True)
    )
    classes = layout.classes
    if classes is None:
        files = [f for f in parsed.values() if isinstance(f, VocFile)]
        classes = tuple(sorted({obj.name for f in files for obj in f.objects if obj.name}))
        log.info("%s: classes (no classes.txt: the names found, sorted): %s", layout.root, ", ".join(classes))
    return parsed, classes


def _read(layout: VocLayout, image_size: int | None, keep_images: bool) -> _Read:
    parsed, classes = _parse(layout)
    index = {name: i for i, name in enumerate(classes)}
    finders = {images: ImageFinder(images) for _, images in dict.fromkeys(layout.folders.values())}
    read = _Read(classes, {}, list(layout.problems), {})
    used: set[Path] = set()
    claims: dict[Path, VocFile] = {}  # image → the first XML file that labels it
    for name, split_xmls in layout.splits.items():
        split_files = [parsed[x] for x in split_xmls if isinstance(parsed[x], VocFile)]
        keep = keep_images and image_size is not None
        out = np.empty((len(split_files), image_size, image_size, 3), np.uint8) if keep else None
        images = layout.folders[name][1]
        found = [_claim(image_of(f, finders[images], layout.root, images), f, claims, layout.root) for f in split_files]

        def one(i: int, split_files=split_files, out=out, found=found):
            return _read_voc_image(split_files[i], found[i], layout.root, index, image_size, out, i)

        done = each_image(one, len(split_files))
        results, paths = [r for r, _ in done], [p for _, p in done]
        used.update(p for p in paths if p is not None)
        by_xml = {file.xml: result.problems for file, result in zip(split_files, results, strict=True)}
        read.problems += [p for x in split_xmls for p in (by_xml[x] if x in by_xml else [parsed[x]])]  # file order
        read.splits[name] = (results, paths, [shown_path(p, layout.root) if p is not None else "" for p in paths])
        if out is not None:
            read.out[name] = out
    for xml_folder, images in dict.fromkeys(layout.folders.values()):
        stems = {x.stem.lower() for x in xml_folder.iterdir() if x.suffix.lower() == ".xml"}
        for path in finders[images].exact.values():
            if path not in used and path.stem.lower() not in stems:
                why = "image with no XML file: not read"
                read.problems.append(LabelProblem(shown_path(path, layout.root), None, why, "no-label"))
    if note := _clipped_note(layout, read):
        read.problems.append(note)
    return read


def _claim(found, file: VocFile, claims: dict[Path, VocFile], root: Path) -> tuple[Path | None, list[LabelProblem]]:
    """`found` (image, problems) unless another XML file labels that image already: then no image and a problem of
    kind "claimed" naming both XML files and the image (the first keeps it)."""
    path, problems = found
    if path is None:
        return found
    if (first := claims.setdefault(path, file)) is not file:
        why = f"labels {shown_path(path, root)}, which {first.shown} labels already; skipped"
        return None, [*problems, LabelProblem(file.shown, None, why, "claimed")]
    return found


def _clipped_note(layout: VocLayout, read: _Read) -> LabelProblem | None:
    """The one note on boxes clipped to the image edge, at the annotations folder of the first split with one."""
    first = next((name for name, r in read.splits.items() if any(result.clipped for result in r[0])), None)
    if first is None:
        return None
    clipped = [where for r in read.splits.values() for result in r[0] for where in result.clipped]
    (path, line), files_clipped = clipped[0], len({p for p, _ in clipped})
    why = (
        f"{len(clipped)} box(es) in {files_clipped} XML file(s) ran past the image edge and were clipped to it "
        f"(first: {path}" + (f", line {line})" if line else ")")
    )
    return LabelProblem(shown_path(layout.folders[first][0], layout.root), None, why, "clipped")


def _with_box(results: list[ImageResult]) -> int:
    return sum(1 for r in results if r.boxes is not None and len(r.boxes))


def lint_layout(layout: VocLayout, image_size: int | None) -> list[LabelProblem]:
    """Every label problem of a VOC layout (images decoded, not kept); a train split with no image with a box is a
    problem of kind "no-box" at train's annotations folder, before the note on clipped boxes (which comes last)."""
    read = _read(layout, image_size, False)
    problems = read.problems
    if _with_box(read.splits["train"][0]) == 0:
        why = "no training image with a valid box: training would be refused"
        at = len(problems) - (1 if problems and problems[-1].is_note else 0)
        train_annotations = shown_path(layout.folders["train"][0], layout.root)
        problems.insert(at, LabelProblem(train_annotations, None, why, "no-box"))
    return problems


def raw_layout(layout: VocLayout, format_name: str) -> RawDataset:
    """Every split of a VOC layout in the images' own pixels, difficult objects as ignore regions (RawDataset of
    `format_name`), after the same lint as lint_layout (its problems are in `problems`)."""
    read = _read(layout, None, False)
    splits = {name: raw_images(paths, names, results) for name, (results, paths, names) in read.splits.items()}
    return RawDataset(format_name, read.classes, splits, str(layout.root), tuple(read.problems))


def load_layout(layout: VocLayout, image_size: int) -> DetectionDataset:
    """A VOC layout letterboxed to image_size×image_size (uint8 N×S×S×3), boxes in their pixels, difficult objects
    in each split's `crowds`; a split whose images are all unusable is None. A DataError when train has no image with
    a valid box."""
    read = _read(layout, image_size, True)
    splits: dict[str, DetectionSplit | None] = {}
    for name, (results, _, names) in read.splits.items():
        if name == "train" and _with_box(results) == 0:
            kept = sum(1 for r in results if r.boxes is not None)
            raise no_training_data(layout.root, read.problems, f"{kept} usable image(s), none with a box")
        if all(r.boxes is None for r in results):
            splits[name] = None
            continue
        images, kept = compact(read.out[name], results)
        crowds = tuple(results[i].crowds for i in kept)
        splits[name] = DetectionSplit(
            images,
            tuple(results[i].boxes for i in kept),
            tuple(names[i] for i in kept),
            tuple(p for r in results for p in r.problems),
            crowds if any(len(c) for c in crowds) else (),
        )
    return loaded_dataset(layout.root, layout.root.resolve().name, read.classes, splits, read.problems)
