"""Pascal VOC annotation files: parsed safely (defusedxml), and each object checked and mapped to convscope's pixels.

Coordinates: VOC's `xmin … ymax` are 1-based pixel indices, inclusive (the VOC devkit: xmin 1, xmax W is the whole
width), so a box covers [xmin − 1, xmax] × [ymin − 1, ymax] in convscope's pixels (pixel i covers [i, i+1)): the
conversion of detectron2 (detectron2/data/datasets/pascal_voc.py). Tools differ by up to a pixel here: py-faster-rcnn,
mmdetection's converter and Ultralytics' VOC.yaml subtract 1 from all four (width xmax − xmin), torchvision's VOC
wrapper and the TF OD API take them as they are. A box with xmax ≤ xmin (or ymax ≤ ymin) is zero-size — a click
without a drag in the labelling tool — or inverted, and dropped. A box running past the image is clipped to it, as
Ultralytics and torchvision's ClampBoundingBoxes do; one wholly outside is dropped.

defusedxml refuses entity declarations and external references (billion laughs, XXE): such a file is one problem of
kind "xml", and its image is skipped, as is a malformed one, one nested more than MAX_XML_DEPTH levels, or one
with more than MAX_BOXES objects (kind "boxes").
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from xml.etree.ElementTree import ParseError, TreeBuilder

import numpy as np
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from convscope.data.detection.boxes import MAX_BOXES, LabelProblem, cut, echo
from convscope.data.detection.reading import finite_number

MAX_XML_BYTES = 16 * 2**20  # an annotation file is a few KiB; one this big is not one, and is not read
MAX_XML_DEPTH = 100  # VOC nests 4 levels (annotation, object, bndbox, xmin)


@dataclass(frozen=True)
class VocObject:
    line: int | None  # of its <object> tag
    number: int  # 1-based among the file's objects, for messages
    name: str
    difficult: bool
    coords: tuple[str | None, ...] | None  # xmin, ymin, xmax, ymax as written (None: missing); None: no <bndbox>

    @property
    def where(self) -> str:
        return f"object {self.number} ({cut(self.name, 40)})" if self.name else f"object {self.number}"


@dataclass(frozen=True)
class VocFile:
    xml: Path
    shown: str
    filename: str | None  # <filename>
    size: tuple[str | None, str | None] | None  # <size>'s <width>, <height> as written; None: no <size>
    objects: tuple[VocObject, ...]


class _TooBig(Exception):
    """An annotation file past a bound (MAX_XML_DEPTH, MAX_BOXES objects): `kind` and `message` of its problem."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class _Lines(TreeBuilder):
    """A TreeBuilder that remembers the line each element starts on, so that problems name it, and stops at once
    past MAX_XML_DEPTH levels or MAX_BOXES <object>s (before the tree costs more memory)."""

    def __init__(self) -> None:
        super().__init__()
        self.expat = None  # set to the parser's expat object once the parser exists
        self.lines: dict[object, int] = {}
        self.depth = self.objects = 0

    def start(self, tag, attrs):
        self.depth += 1
        if self.depth > MAX_XML_DEPTH:
            raise _TooBig("xml", f"refused: XML nested more than {MAX_XML_DEPTH} levels; its image is skipped")
        if self.depth == 2 and tag == "object":
            self.objects += 1
            if self.objects > MAX_BOXES:
                why = f"more than {MAX_BOXES:,} objects, more than an image may have; its image is skipped"
                raise _TooBig("boxes", why)
        element = super().start(tag, attrs)
        if self.expat is not None:
            self.lines[element] = self.expat.CurrentLineNumber
        return element

    def end(self, tag):
        self.depth -= 1
        return super().end(tag)


def parse_xml(path: Path, shown: str) -> VocFile | LabelProblem:
    """One annotation file, or the problem (kind "xml") that makes its image skipped."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):  # a named pipe would block the read forever
            return LabelProblem(shown, None, "not a regular file; its image is skipped", "xml")
        if info.st_size > MAX_XML_BYTES:
            why = f"{info.st_size:,} bytes, more than an annotation file ever is; not read, its image is skipped"
            return LabelProblem(shown, None, why, "xml")
        data = path.read_bytes()
    except OSError as err:
        return LabelProblem(shown, None, f"cannot read ({err.strerror or err}); its image is skipped", "xml")
    builder = _Lines()
    parser = DefusedXMLParser(target=builder)  # entity declarations and external references raise
    builder.expat = getattr(parser, "parser", None)  # the pure-Python XMLParser defusedxml uses keeps its expat here
    try:
        parser.feed(data)
        root = parser.close()
    except _TooBig as err:
        return LabelProblem(shown, builder.expat.CurrentLineNumber if builder.expat else None, str(err), err.kind)
    except DefusedXmlException as err:
        why = (
            f"refused: the XML declares entities ({type(err).__name__}: {getattr(err, 'name', '')}), which is how "
            "billion-laughs and external-entity attacks work and which VOC annotations never need; its image is skipped"
        )
        return LabelProblem(shown, None, why, "xml")
    except (ParseError, ValueError) as err:
        line = err.position[0] if isinstance(err, ParseError) else None
        what = str(err).split(": line ")[0]
        return LabelProblem(shown, line, f"not well-formed XML ({what}); its image is skipped", "xml")
    if root.tag != "annotation":
        why = f"expected an <annotation> root element, found <{root.tag}>; its image is skipped"
        return LabelProblem(shown, None, why, "xml")
    size = root.find("size")
    objects = []
    for number, obj in enumerate(root.findall("object"), start=1):
        box = obj.find("bndbox")
        coords = None if box is None else tuple(child_text(box, tag) for tag in ("xmin", "ymin", "xmax", "ymax"))
        difficult = finite_number(child_text(obj, "difficult") or "0")
        objects.append(
            VocObject(builder.lines.get(obj), number, child_text(obj, "name") or "", bool(difficult), coords)
        )
    wh = None if size is None else (child_text(size, "width"), child_text(size, "height"))
    return VocFile(path, shown, child_text(root, "filename"), wh, tuple(objects))


def child_text(element, tag: str) -> str | None:
    """The text of `element`'s first <tag> child, stripped; None when there is none or it is blank."""
    text = element.findtext(tag)
    return None if text is None or not text.strip() else text.strip()


def check_object(obj: VocObject, classes: dict[str, int], width: int, height: int, scale: float):
    """(kind, message) of what is wrong with one object on a width×height image, or (class, xyxy, clipped)."""
    if not obj.name:
        return "entry", f"{obj.where}: no <name>, skipped"
    if obj.name not in classes:
        listed = cut(", ".join(classes), 200)
        return "unknown-class", f"{obj.where}: class {echo(obj.name, 40)} is not in the class list ({listed}), skipped"
    if obj.coords is None:
        return "entry", f"{obj.where}: no <bndbox>, skipped"
    values = []
    for tag, text in zip(("xmin", "ymin", "xmax", "ymax"), obj.coords, strict=True):
        if text is None:
            return "entry", f"{obj.where}: <bndbox> has no <{tag}>, skipped"
        if (value := finite_number(text)) is None:
            return "number", f"{obj.where}: <{tag}> is {echo(text)}, not a number"
        values.append(value)
    xmin, ymin, xmax, ymax = values
    written = f"xmin {xmin:g}, ymin {ymin:g}, xmax {xmax:g}, ymax {ymax:g}"
    if xmax < xmin or ymax < ymin:
        return "size", f"{obj.where}: inverted box ({written}: expected xmax > xmin and ymax > ymin)"
    if xmax == xmin or ymax == ymin:
        return "size", f"{obj.where}: zero-size box ({written}: expected xmax > xmin and ymax > ymin)"
    x1, y1, x2, y2 = xmin - 1, ymin - 1, xmax, ymax  # 1-based inclusive pixels → [x1, x2] (module docstring)
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        return "outside", f"{obj.where}: box ({written}) outside the {width}×{height} image"
    clipped = x1 < 0 or y1 < 0 or x2 > width or y2 > height
    xyxy = np.clip(np.array([x1, y1, x2, y2]), 0, [width, height, width, height])
    w, h = (xyxy[2] - xyxy[0]) * scale, (xyxy[3] - xyxy[1]) * scale
    if not obj.difficult and (w < 1 or h < 1):  # an ignore region may be small: it only tells scoring what to skip
        after = " after resizing" if scale != 1 else ""
        return "size", f"{obj.where}: box under 1 pixel{after} ({w:.2f}×{h:.2f} px)"
    return classes[obj.name], xyxy, clipped


def size_problem(file: VocFile, image: str, width: int, height: int) -> LabelProblem | None:
    if file.size is None:
        return None
    said = tuple(finite_number(text) if text is not None else None for text in file.size)
    if said == (width, height):
        return None
    shown = "×".join(f"{v:g}" if v is not None else echo(t) for v, t in zip(said, file.size, strict=True))
    why = f"<size> says {shown} but {image} is {width}×{height}; the image's own size is used"
    return LabelProblem(file.shown, None, why, "image-size")
