"""`fashion-scenes`: a built-in detection dataset of real Fashion-MNIST items pasted on textured backgrounds.

Each scene is an S×S RGB image (S = 128 by default) with 1 to `max_objects` items. An item is scaled so its longer side
is 12–56 px, tinted, and pasted with its own intensity (stretched, so that dark garments are opaque too) as the alpha
mask, so the background shows around it. Its box is the tight box of the pixels whose alpha is above VISIBLE_ALPHA:
exact, not drawn by hand. Boxes overlap little
(IoU ≤ 0.2, and no box covers more than 30 % of a smaller one, so no item hides under another).

Training scenes use items of the Fashion-MNIST train set only; validation scenes the first half of its test set and
test scenes the second half, so no item is seen both in training and in evaluation. `fashion-scenes.json` records,
for every object, which item it is and where it went.

Scene j of a split depends only on (seed, split, j): the same seed writes byte-identical files, and growing n adds
scenes without changing the existing ones.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from convscope import userfiles
from convscope.data.idx import FASHION_CLASSES, load_idx_dataset
from convscope.errors import DataError
from convscope.files import atomic_write_text

GENERATOR = "fashion-scenes"
MANIFEST = "fashion-scenes.json"  # also what marks a folder as ours, so it may be overwritten
MAX_MANIFEST_BYTES = 256 * 2**20  # it names every file written: ~40 bytes each, so millions of scenes
_FORMAT = 1
SPLITS = ("train", "val", "test")
VISIBLE_ALPHA = 32  # alpha (0–255) above which a pixel is part of the object, i.e. inside its box
ALPHA_PERCENTILE = 90  # this percentile of an item's non-zero intensities becomes fully opaque
MAX_IOU = 0.2
MAX_COVER = 0.3  # IoU alone would let a 12-px item sit wholly inside a 56-px one (IoU 0.05) and vanish under it
MIN_CONTRAST = 100.0  # RGB distance (of 441 at most) between an item's tint and the background under it
_PLACE_TRIES = 30  # positions tried for one object before the scene stops growing
_ITEM_TRIES = 10  # items tried when one has no visible pixel at its drawn size
_TINT_TRIES = 20


@dataclass(frozen=True)
class _Pool:
    """The Fashion-MNIST items one split of scenes draws from."""

    source: str  # 'train' or 'test': the Fashion-MNIST split
    first: int  # index of images[0] in that split
    images: np.ndarray  # uint8 N×28×28
    labels: np.ndarray  # int64 N


@dataclass(frozen=True)
class _Params:
    size: int
    min_side: int
    max_side: int
    max_objects: int


# ── drawing ───────────────────────────────────────────────────────────────────────────────────────────────────────
def _ramp(cells: int, size: int) -> np.ndarray:
    """size×cells weights that linearly interpolate `cells` evenly spaced values onto `size` pixels."""
    t = np.linspace(0.0, cells - 1, size)
    low = np.minimum(np.floor(t).astype(np.int64), cells - 2)
    frac = t - low
    weights = np.zeros((size, cells))
    weights[np.arange(size), low] = 1 - frac
    weights[np.arange(size), low + 1] = frac
    return weights


def _smooth(values: np.ndarray, size: int) -> np.ndarray:
    """A cells×cells×3 grid interpolated to size×size×3 (separable bilinear, as two matrix products per channel)."""
    ramp = _ramp(values.shape[0], size)  # size×cells
    return (ramp @ values.transpose(2, 0, 1) @ ramp.T).transpose(1, 2, 0)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """float64 size×size×3 in about 0–255: a colour gradient, soft blotches, sometimes stripes, and fine grain."""
    cells = int(rng.integers(3, 10))  # blotch scale: size/cells px
    # The corner-colour gradient is bilinear, so sampling it on the blotch grid and interpolating once is exact.
    corners = rng.uniform(20, 235, (2, 2, 3))
    coarse = _smooth(corners, cells) + rng.uniform(5, 35) * rng.normal(0, 1, (cells, cells, 3))
    image = _smooth(coarse, size)
    if rng.random() < 0.5:
        angle, period, phase = rng.uniform(0, np.pi), rng.uniform(6, 32), rng.uniform(0, 2 * np.pi)  # period: px
        y, x = np.mgrid[0:size, 0:size]
        wave = np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period + phase)
        image += wave[:, :, None] * rng.uniform(5, 30) * rng.uniform(0.3, 1.0, 3)
    image += rng.normal(0, rng.uniform(0, 6), (size, size, 3))
    return image


def _item_alpha(item: np.ndarray) -> np.ndarray:
    """uint8 28×28 alpha of an item: its intensity stretched so its 90th percentile (over non-zero pixels) is opaque.

    Dark garments have intensities of 30–100 of 255: used as they are, they would be mostly transparent.
    """
    top = np.percentile(item[item > 0], ALPHA_PERCENTILE)
    return np.rint(np.clip(item * (255 / top), 0, 255)).astype(np.uint8)


def _scaled_alpha(item: np.ndarray, side: int) -> np.ndarray:
    """uint8 h×w alpha of a 28×28 item (it must have a non-zero pixel): `_item_alpha`, cropped to its non-zero
    pixels, then scaled (Pillow bilinear) so that max(h, w) = side."""
    rows, cols = np.flatnonzero(item.any(axis=1)), np.flatnonzero(item.any(axis=0))
    crop = _item_alpha(item)[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    scale = side / max(crop.shape)
    width, height = max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))
    return np.asarray(Image.fromarray(crop).resize((width, height), Image.Resampling.BILINEAR), dtype=np.uint8)


def _tight_box(alpha: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x1, y1, x2, y2) of the pixels with alpha > VISIBLE_ALPHA, exclusive ends; None when there are none."""
    mask = alpha > VISIBLE_ALPHA
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _fits(box: tuple[int, int, int, int], placed: list[tuple[int, int, int, int]]) -> bool:
    """Whether `box` overlaps every placed box with IoU ≤ MAX_IOU and covers at most MAX_COVER of the smaller."""
    if not placed:
        return True
    others = np.array(placed, dtype=np.float64)  # n×4
    ix = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    iou = inter / (area + areas - inter)
    cover = inter / np.minimum(area, areas)
    return bool(np.all(iou <= MAX_IOU) and np.all(cover <= MAX_COVER))


def _tint(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A random RGB colour at least MIN_CONTRAST away from `under` (the background colour below the item)."""
    for _ in range(_TINT_TRIES):
        tint = rng.uniform(0, 255, 3)
        if np.linalg.norm(tint - under) >= MIN_CONTRAST:
            return tint
    return np.full(3, 255.0 if under.mean() < 128 else 0.0)  # ≥ 127·√3 ≈ 220 away from any colour


def _paste(canvas: np.ndarray, alpha: np.ndarray, x: int, y: int, rng: np.random.Generator) -> list[int]:
    """Blend a tinted item into canvas (float S×S×3) at column x, row y; return its tint as integers."""
    height, width = alpha.shape
    a = alpha.astype(np.float64)[:, :, None] / 255  # h×w×1 in [0, 1]
    region = canvas[y : y + height, x : x + width]
    under = (region * a).sum(axis=(0, 1)) / a.sum()  # the background the item will be seen against
    tint = np.round(_tint(rng, under))
    colour = tint * (0.6 + 0.4 * a)  # darker where the item is faint: keeps some of its own shading
    canvas[y : y + height, x : x + width] = region * (1 - a) + colour * a
    return [int(v) for v in tint]


def _add_object(
    canvas: np.ndarray, placed: list, pool: _Pool, params: _Params, rng: np.random.Generator
) -> dict | None:
    """Place one random item where it overlaps little; its manifest record, or None when no place was found."""
    for _ in range(_ITEM_TRIES):
        index = int(rng.integers(len(pool.images)))
        alpha = _scaled_alpha(pool.images[index], int(rng.integers(params.min_side, params.max_side + 1)))
        inner = _tight_box(alpha)
        if inner is not None:
            break
    else:
        return None
    height, width = alpha.shape
    for _ in range(_PLACE_TRIES):
        x, y = int(rng.integers(params.size - width + 1)), int(rng.integers(params.size - height + 1))
        box = (x + inner[0], y + inner[1], x + inner[2], y + inner[3])
        if _fits(box, placed):
            break
    else:
        return None
    tint = _paste(canvas, alpha, x, y, rng)
    placed.append(box)
    return {
        "item": pool.first + index,  # index in the Fashion-MNIST `source` split
        "class": int(pool.labels[index]),
        "patch": [x, y, width, height],  # where the scaled item went, px
        "box": list(box),  # x1, y1, x2, y2 px, exclusive ends
        "tint": tint,
    }


def _render_scene(seed: int, split: str, index: int, pool: _Pool, params: _Params) -> tuple[np.ndarray, list[dict]]:
    """Scene `index` of `split`: uint8 S×S×3 and one record per object (drawn from a Generator of (seed, split, j))."""
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    canvas = _background(rng, params.size)
    objects: list[dict] = []
    placed: list[tuple[int, int, int, int]] = []
    for _ in range(int(rng.integers(1, params.max_objects + 1))):
        record = _add_object(canvas, placed, pool, params, rng)
        if record is None:
            break
        objects.append(record)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8), objects


def yolo_label_text(objects: list[dict], size: int) -> str:
    """YOLO rows `class cx cy w h`, normalised to [0, 1] (6 decimals: under 1e-4 px at 128 px)."""
    lines = []
    for obj in objects:
        x1, y1, x2, y2 = obj["box"]
        cx, cy, w, h = (x1 + x2) / 2 / size, (y1 + y2) / 2 / size, (x2 - x1) / size, (y2 - y1) / size
        lines.append(f"{obj['class']} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n")
    return "".join(lines)


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    # No timestamp or other varying metadata: the same pixels give the same bytes. Level 1 instead of the default 6:
    # 1.5 ms instead of 3.3 per 128-px scene, files ~15 % bigger (the fine grain does not compress either way).
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


# ── files ─────────────────────────────────────────────────────────────────────────────────────────────────────────
def _write(path: Path, data: bytes) -> None:
    """Write via a temporary file and a rename, so a reader never sees half a file.

    Not files.atomic_write_bytes: its two fsyncs per file cost ~7 ms here, over a minute for 10,000 files. One
    os.sync() at the end, before data.yaml and the manifest say the dataset is complete, gives the same durability.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _is_temp(path: Path) -> bool:
    return path.name.startswith(".") and path.name.endswith(".tmp")  # ours and atomic_write_text's


def _previous_files(out: Path) -> set[str]:
    """Files (relative posix paths) a previous fashion-scenes run planned in `out`; DataError if it was not one."""
    manifest = out / MANIFEST
    refuse = f"{out}: expected an empty folder or a previous {GENERATOR} output"
    if not manifest.exists():
        raise DataError(f"{refuse}, found other files and no {MANIFEST}")
    try:  # bounded (convscope.userfiles): a pipe is not opened, nesting is checked before parsing
        doc = userfiles.parse_json(userfiles.read_bytes(manifest, max_bytes=MAX_MANIFEST_BYTES, what=MANIFEST))
    except DataError as err:
        raise DataError(
            f"{refuse}, found an unreadable {MANIFEST} ({str(err).removeprefix(f'{manifest}: ')})"
        ) from None
    except (ValueError, UnicodeDecodeError) as err:
        raise DataError(f"{refuse}, found an unreadable {MANIFEST} ({err})") from None
    if not isinstance(doc, dict) or doc.get("generator") != GENERATOR or not isinstance(doc.get("files"), list):
        raise DataError(f"{refuse}, found a {MANIFEST} that {GENERATOR} did not write")
    return {f for f in doc["files"] if isinstance(f, str)}


def _prepare(out: Path, planned: set[str]) -> None:
    """Make `out` ready: create it, or clear what a previous run wrote there that this run will not overwrite."""
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: expected a folder to write the dataset into, found a file")
    out.mkdir(parents=True, exist_ok=True)
    present = [p for p in out.rglob("*") if not p.is_dir()]
    if present:
        previous = _previous_files(out)
        ours = previous | {MANIFEST, "data.yaml"}
        strangers = [p for p in present if p.relative_to(out).as_posix() not in ours and not _is_temp(p)]
        if strangers:
            raise DataError(
                f"{out}: holds {strangers[0].relative_to(out).as_posix()} (and {len(strangers) - 1} more), which "
                f"{GENERATOR} did not write; expected an empty folder or an untouched previous output"
            )
        (out / "data.yaml").unlink(missing_ok=True)  # a half-rewritten dataset must not look loadable
        for path in present:
            relative = path.relative_to(out).as_posix()
            if _is_temp(path) or (relative in previous and relative not in planned):
                path.unlink()
    for kind in ("images", "labels"):
        for split in SPLITS:
            folder = out / kind / split
            if any(f.startswith(f"{kind}/{split}/") for f in planned):
                folder.mkdir(parents=True, exist_ok=True)
            else:
                with contextlib.suppress(OSError):  # left over from a bigger run; only removed when empty
                    folder.rmdir()


def _counts(n: int) -> dict[str, int]:
    """80/10/10: val and test get n // 10 each, train the rest."""
    return {"train": n - 2 * (n // 10), "val": n // 10, "test": n // 10}


def _file_names(counts: dict[str, int]) -> dict[str, list[tuple[str, str]]]:
    """split → (image, label) relative paths, scene by scene."""
    digits = max(6, len(str(max(counts.values()))))
    return {
        split: [(f"images/{split}/{j:0{digits}d}.png", f"labels/{split}/{j:0{digits}d}.txt") for j in range(count)]
        for split, count in counts.items()
    }


def _pools(data_dir: str | Path | None, counts: dict[str, int]) -> dict[str, _Pool]:
    """train ← Fashion-MNIST train; val ← first half of its test set; test ← second half."""
    fashion = load_idx_dataset(data_dir, "fashion-mnist")
    train, test = fashion.train, fashion.test
    half = len(test) // 2
    pools = {
        "train": _Pool("train", 0, train.images[..., 0], train.labels),
        "val": _Pool("test", 0, test.images[:half, ..., 0], test.labels[:half]),
        "test": _Pool("test", half, test.images[half:, ..., 0], test.labels[half:]),
    }
    for split, pool in pools.items():
        visible = pool.images.reshape(len(pool.images), -1).max(axis=1, initial=0) > 0
        if counts[split] and not visible.any():
            raise DataError(
                f"{fashion.source}: {split} scenes need Fashion-MNIST {pool.source} items with visible pixels, "
                f"found {len(pool.images)} item(s), all black"
            )
    return pools


def _check_params(n: int, seed: int, size: int, min_side: int, max_side: int, max_objects: int) -> None:
    ints = {"n": n, "seed": seed, "size": size, "min_side": min_side, "max_side": max_side, "max_objects": max_objects}
    for name, value in ints.items():
        if not isinstance(value, int | np.integer) or isinstance(value, bool):
            raise DataError(f"{name} must be an integer. Received: {value!r}")
    if n < 1 or seed < 0 or max_objects < 1 or size < 16:
        raise DataError(
            f"expected n ≥ 1, seed ≥ 0, max_objects ≥ 1 and size ≥ 16. Received n={n}, seed={seed}, "
            f"max_objects={max_objects}, size={size}"
        )
    if not 4 <= min_side <= max_side <= size:
        raise DataError(
            f"expected 4 ≤ min_side ≤ max_side ≤ size (px). Received min_side={min_side}, max_side={max_side}, "
            f"size={size}"
        )


def data_yaml_text(counts: dict[str, int]) -> str:
    """YOLO's data.yaml; split paths relative to its folder (no `path:` key, which Ultralytics reads differently)."""
    doc: dict = {split: f"images/{split}" for split in SPLITS if counts[split]}
    doc["nc"] = len(FASHION_CLASSES)
    doc["names"] = list(FASHION_CLASSES)
    header = f"# {GENERATOR}: Fashion-MNIST items on textured backgrounds, written by convscope\n"
    return header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def make_scenes(
    out: str | Path,
    n: int,
    seed: int = 0,
    size: int = 128,
    data_dir: str | Path | None = None,
    min_side: int = 12,
    max_side: int = 56,
    max_objects: int = 6,
) -> Path:
    """Write n scenes (80/10/10 train/val/test) as a YOLO dataset in `out`; return `out`.

    `data_dir` holds the Fashion-MNIST IDX files (None: the system copy). `out` must be new, empty, or an earlier
    fashion-scenes output (whose files are replaced); anything else is a DataError.
    """
    _check_params(n, seed, size, min_side, max_side, max_objects)
    out = Path(out)
    counts = _counts(n)
    names = _file_names(counts)
    pools = _pools(data_dir, counts)
    planned = {path for pairs in names.values() for pair in pairs for path in pair}
    _prepare(out, planned)
    header = {"generator": GENERATOR, "format": _FORMAT, "complete": False, "files": sorted(planned)}
    atomic_write_text(out / MANIFEST, json.dumps(header) + "\n")  # first: a crash mid-way still leaves ours marked

    params = _Params(size, min_side, max_side, max_objects)
    scenes = []
    # One thread: threads were measured to gain 5 % (numpy on 128-px arrays and Pillow's PNG encoder hold the GIL),
    # and a process pool would re-import the caller's main module on spawn. ~4 ms per 128-px scene.
    for split, pairs in names.items():
        for j, (image_name, label_name) in enumerate(pairs):
            image, objects = _render_scene(seed, split, j, pools[split], params)
            _write(out / image_name, png_bytes(image))
            _write(out / label_name, yolo_label_text(objects, size).encode())
            record = {"image": image_name, "label": label_name, "source": pools[split].source, "objects": objects}
            scenes.append(record)
    if hasattr(os, "sync"):
        os.sync()  # every scene on disk before data.yaml says the dataset is there
    atomic_write_text(out / "data.yaml", data_yaml_text(counts))
    settings = {"n": n, "seed": seed, "size": size, "min_side": min_side, "max_side": max_side}
    manifest = {
        **header,
        "complete": True,
        "settings": {**settings, "max_objects": max_objects, "visible_alpha": VISIBLE_ALPHA, "max_iou": MAX_IOU},
        "classes": list(FASHION_CLASSES),
        "counts": counts,
        "scenes": scenes,
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, separators=(",", ":")) + "\n")
    return out
