"""Class lists beside a detection dataset, one lookup for every layout (VOC, VOC split folders, the TF Object
Detection CSV): the first of classes.txt, labels.txt (one name a line; labelme2voc's `__ignore__` and `_background_`
left out) and TF's label_map.pbtxt / labelmap.pbtxt (names in id order), in the dataset folder, then its
annotations/ folder, then the folders a layout adds (`class_list(class_folders(root, ...))`). Objects of other classes
are problems of the readers; without a list the readers use the sorted names found.

`read_label_map` reads TF's label map (`item { id: 1 name: 'cat' }`, one item per class) with two bounded regular
expressions, not a protobuf parser: the classes are its names in id order.
"""

from __future__ import annotations

import re
from pathlib import Path

from convscope import userfiles
from convscope.data.detection.boxes import cut, echo
from convscope.data.detection.reading import child_folder, read_text
from convscope.errors import DataError

CLASS_FILES = ("classes.txt", "labels.txt")
LABEL_MAPS = ("label_map.pbtxt", "labelmap.pbtxt")
_LABELME_EXTRAS = ("__ignore__", "_background_")  # labelme2voc's labels.txt starts with these; they are not classes


def read_lines(path: Path, what: str) -> list[str]:
    """The lines of a text file the dataset needs (a class list, an image set); a DataError when it is unreadable."""
    try:
        return read_text(path).splitlines()
    except DataError as err:  # unreadable, not text, or past a bound (convscope.userfiles): name what it is
        raise DataError(f"{err} ({what})") from None


def class_folders(root: Path, *more: Path | None) -> list[Path]:
    """Where a dataset's class list is looked for, in order: `root`, its annotations/ folder (any case), `more`."""
    return list(dict.fromkeys(f for f in (root, child_folder(root, "annotations"), *more) if f is not None))


def class_file(*folders: Path) -> tuple[str, ...] | None:
    """The class names of the first classes.txt or labels.txt in `folders` (one a line, labelme's extras left out),
    or None when there is none. A DataError when it lists none, or one twice."""
    for folder in dict.fromkeys(folders):
        for name in CLASS_FILES:
            path = folder / name
            if not path.is_file():
                continue
            lines = read_lines(path, "the class list")
            names = [line.strip() for line in lines if line.strip() and line.strip() not in _LABELME_EXTRAS]
            if not names:
                raise DataError(f"{path}: expected class names, one a line, found none")
            if len(set(names)) != len(names):
                twice = next(n for n in names if names.count(n) > 1)
                raise DataError(f"{path}: class {echo(twice, 40)} is listed twice")
            return tuple(names)
    return None


_COMMENT = re.compile(r"(?m)^([^'\"\n]*)#[^\n]*$")  # a comment before any quote on its line
_ITEM = re.compile(r"\bitem\s*\{([^{}]*)\}")
_ID = re.compile(r"\bid\s*:\s*(-?\d{1,9})\b")
_NAME = re.compile(r"\b(name|display_name)\s*:\s*(?:\"([^\"\n]*)\"|'([^'\n]*)')")


def read_label_map(path: Path) -> tuple[str, ...]:
    """The class names of a TF label map (`item { id: 1 name: 'cat' }` …) in id order; `display_name` when an item
    has no `name`. A DataError naming the file and line for an item without an id or a name, an id or name given
    twice, or a file with no item."""
    text = _COMMENT.sub(r"\1", userfiles.read_text(path, what="label map"))
    names: dict[int, str] = {}
    for match in _ITEM.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        body = match.group(1)
        ids = _ID.search(body)
        found = {m.group(1): m.group(2) if m.group(2) is not None else m.group(3) for m in _NAME.finditer(body)}
        name = found.get("name", found.get("display_name"))
        if ids is None or not name:
            raise DataError(f"{path}, line {line}: expected an item with an id and a name, found {cut(body, 80)!r}")
        number = int(ids.group(1))
        if number in names or name in names.values():
            twice = f"id {number}" if number in names else f"name {echo(name, 40)}"
            raise DataError(f"{path}, line {line}: {twice} appears twice")
        names[number] = name
    if not names:
        raise DataError(f"{path}: expected item {{ id: 1 name: '…' }} entries, found none")
    return tuple(names[number] for number in sorted(names))


def class_list(folders: list[Path]) -> tuple[tuple[str, ...], Path] | None:
    """The class names of the first class list in `folders` (in order; in each, classes.txt, labels.txt, then
    label_map.pbtxt or labelmap.pbtxt) and its path, or None when there is none."""
    for folder in dict.fromkeys(folders):
        names = class_file(folder)  # classes.txt / labels.txt, read as the VOC reader reads them
        if names is not None:
            return names, next(folder / n for n in CLASS_FILES if (folder / n).is_file())
        for name in LABEL_MAPS:
            if (folder / name).is_file():
                return read_label_map(folder / name), folder / name
    return None
