"""Pointing game (Zhang et al. 2016): does a class map's peak fall on the object? Real photos with boxes, no training
on them.

The set: BCCD's test split (72 blood-smear photos, 640×480, MIT licence; ../shared/data/bccd-voc), each with its
white blood cell (WBC) boxes. Every BCCD photo holds a WBC, so a whole-photo "WBC or not" classifier would learn
nothing; the classifier is instead "is there a WBC in this square?" ("wbc" or "rest"), trained on squares cut from the
train and val splits only (`tiles`): a square of 224–480 px at a seeded random place is "wbc" when a WBC box lies
wholly inside it, "rest" when no WBC box touches it, and dropped otherwise. The test squares are 480×480 (the photo's
full height) at a seeded random left edge that keeps the WBC inside, so the cell is not always in the middle; a WBC
box covers about 12% of such a square (median 201×181 px), under the quarter Zhang et al. call "difficult".

A hit: the map's strongest pixel lies within 15 px (the standard tolerance, in the square's own 480-px pixels) of a
WBC box of the square, for the class "wbc" (the ground-truth class, as in the original game). The "centre" row is
the baseline of a map that always peaks in the middle.

    .venv/bin/python bench/pointing_game.py tiles /tmp/pointing/bccd-tiles
    .venv/bin/convscope transfer --data /tmp/pointing/bccd-tiles --image-size 224 --cache-features \\
        --head-epochs 5 --threads 2 --out /tmp/pointing/runs/wbc-lite0
    .venv/bin/python bench/pointing_game.py run /tmp/pointing/runs/wbc-lite0 --threads 2

Prints method, layer, hits/total, %, seconds per image and the CPU; results in bench/results/pointing_game.json.
Skips (exit 0, with the reason) when the BCCD folder or the run is missing.
"""

from __future__ import annotations

import argparse
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402 (bench/ is not a package: scripts run as files)

BCCD = common.ROOT.parent / "shared" / "data" / "bccd-voc"
SIDE = 480  # test squares: the photo's full height
TOLERANCE = 15  # px of the square, Zhang et al.'s


def wbc_boxes(root: Path, stem: str) -> list[tuple[float, float, float, float]]:
    """The WBC boxes (xmin, ymin, xmax, ymax) of one photo, zero-size ones dropped, clipped to 640×480."""
    boxes = []
    for obj in ET.parse(root / "Annotations" / f"{stem}.xml").getroot().iter("object"):
        if obj.findtext("name") != "WBC":
            continue
        b = obj.find("bndbox")
        x0, y0, x1, y1 = (float(b.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, 640), min(y1, 480)
        if x1 - x0 > 1 and y1 - y0 > 1:
            boxes.append((x0, y0, x1, y1))
    return boxes


def split(root: Path, name: str) -> list[str]:
    return (root / "ImageSets" / "Main" / f"{name}.txt").read_text().split()


def make_tiles(root: Path, out: Path, per_image: int = 4, seed: int = 0) -> dict[str, int]:
    """train/{wbc,rest} from BCCD's train+val photos, validation/{wbc,rest} from its test photos (for the run's
    accuracy only; the pointing game uses its own 480-px squares of the test photos)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    for folder, stems in (("train", split(root, "train") + split(root, "val")), ("validation", split(root, "test"))):
        for label in ("wbc", "rest"):
            (out / folder / label).mkdir(parents=True, exist_ok=True)
        for stem in stems:
            boxes = wbc_boxes(root, stem)
            photo = Image.open(root / "JPEGImages" / f"{stem}.jpg").convert("RGB")
            kept = {"wbc": 0, "rest": 0}
            for _ in range(200):
                if min(kept.values()) >= per_image:
                    break
                side = int(rng.integers(224, 481))
                x, y = int(rng.integers(0, 640 - side + 1)), int(rng.integers(0, 480 - side + 1))
                inside = [x <= b[0] and y <= b[1] and b[2] <= x + side and b[3] <= y + side for b in boxes]
                touch = [b[0] < x + side and x < b[2] and b[1] < y + side and y < b[3] for b in boxes]
                label = "wbc" if any(inside) else "rest" if not any(touch) else None
                if label is None or kept[label] >= per_image:
                    continue
                kept[label] += 1
                name = out / folder / label / f"{stem}-{kept[label]}.jpg"
                photo.crop((x, y, x + side, y + side)).save(name, quality=95)
                counts[f"{folder}/{label}"] = counts.get(f"{folder}/{label}", 0) + 1
    return counts


def pointing_set(root: Path, seed: int = 0) -> list[tuple[str, np.ndarray, list]]:
    """(name, uint8 480×480×3 square, its WBC boxes in the square's pixels) for each BCCD test photo with a WBC."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    items = []
    for stem in split(root, "test"):
        boxes = wbc_boxes(root, stem)
        if not boxes:
            continue
        lo = max(0, int(max(b[2] for b in boxes)) - SIDE)  # left edges that keep every WBC inside
        hi = min(640 - SIDE, int(min(b[0] for b in boxes)))
        x = int(rng.integers(lo, hi + 1)) if hi >= lo else int(rng.integers(0, 640 - SIDE + 1))
        photo = Image.open(root / "JPEGImages" / f"{stem}.jpg").convert("RGB").crop((x, 0, x + SIDE, SIDE))
        items.append((stem, np.asarray(photo), [(b[0] - x, b[1], b[2] - x, b[3]) for b in boxes]))
    return items


def hit(peak_rc: tuple[float, float], boxes: list, tolerance: float = TOLERANCE) -> bool:
    """True when the point (row, column) lies within `tolerance` px of one of the boxes."""
    r, c = peak_rc
    for x0, y0, x1, y1 in boxes:
        dx = max(x0 - c, 0.0, c - x1)
        dy = max(y0 - r, 0.0, r - y1)
        if dx * dx + dy * dy <= tolerance * tolerance:
            return True
    return False


# (label, layers, method, how): how is "plain", "mirror" (the map of the mirrored image, mirrored back, averaged in),
# "shift" (maps of the image shifted by ±16 px, shifted back, averaged) or "pad" (the image shrunk to 192 px and
# reflect-padded back to 224, the map cropped to the image: no zero padding meets the photo's own border)
VARIANTS = [
    ("HiResCAM", ["base1"], "hirescam", "plain"),
    ("Grad-CAM", ["base1"], "gradcam", "plain"),
    ("LayerCAM", ["base1"], "layercam", "plain"),
    ("HiResCAM", ["base1.block11"], "hirescam", "plain"),
    ("Grad-CAM", ["base1.block11"], "gradcam", "plain"),
    ("LayerCAM", ["base1.block11"], "layercam", "plain"),
    ("HiResCAM", ["base1.block8"], "hirescam", "plain"),
    ("LayerCAM", ["base1.block5"], "layercam", "plain"),
    ("LayerCAM fused", ["base1.block11", "base1"], "layercam", "plain"),
    ("HiResCAM fused", ["base1.block11", "base1"], "hirescam", "plain"),
    ("LayerCAM fused", ["base1.block5", "base1.block11", "base1"], "layercam", "plain"),
    ("HiResCAM", ["base1"], "hirescam", "mirror"),
    ("HiResCAM", ["base1"], "hirescam", "shift"),
    ("HiResCAM", ["base1"], "hirescam", "pad"),
    ("HiResCAM", ["base1.block11"], "hirescam", "mirror"),
    ("LayerCAM", ["base1.block11"], "layercam", "mirror"),
    ("LayerCAM fused", ["base1.block11", "base1"], "layercam", "mirror"),
]


def variant_map(model, x, layers: list[str], method: str, how: str, class_index: int):
    """H×W map in [0, 1] of the normalised image x (1×C×H×W) for `class_index`, and the first layer's map (h×w)."""
    import torch
    import torch.nn.functional as F

    from convscope.inspect.cams import activations_and_gradients, layer_map, upsampled

    size = tuple(x.shape[2:])

    def one(image):
        _, _, pairs = activations_and_gradients(model, image, layers, class_index)
        maps = [layer_map(a, g, method) for a, g in pairs.values()]
        return torch.stack([upsampled(m, size) for m in maps]).mean(0), maps[-1]

    if how == "plain":
        return one(x)
    if how == "mirror":
        a, small = one(x)
        b, _ = one(x.flip(-1))
        return (a + b.flip(-1)) / 2, small
    if how == "shift":
        total, small = one(x)
        for dy, dx in ((16, 16), (-16, -16), (16, -16), (-16, 16)):
            moved = torch.roll(x, (dy, dx), dims=(2, 3))
            m, _ = one(moved)
            total = total + torch.roll(m, (-dy, -dx), dims=(0, 1))
        return total / 5, small
    if how == "pad":
        inner = size[0] - 32
        shrunk = F.interpolate(x, size=(inner, inner), mode="bilinear", align_corners=False, antialias=True)
        padded = F.pad(shrunk, (16, 16, 16, 16), mode="reflect")
        m, small = one(padded)
        crop = m[16 : 16 + inner, 16 : 16 + inner]
        return F.interpolate(crop[None, None], size=size, mode="bilinear", align_corners=False)[0, 0], small
    raise ValueError(how)


def on_border(heat) -> bool:
    """True when the peak of the H×W map lies in its outer 1/14 (one cell of a stride-16 map, half of a stride-32
    one): where zero padding meets the photo's edge."""
    r, c = divmod(int(heat.argmax()), heat.shape[1])
    edge = heat.shape[0] / 14
    return min(r, c) < edge or r >= heat.shape[0] - edge or c >= heat.shape[1] - edge


def library_variants(model, loaded) -> list:
    """pytorch-grad-cam's Score-CAM and Ablation-CAM (a dev dependency), when it is installed."""
    try:
        import pytorch_grad_cam as grad_cam
    except ImportError:
        return []
    found = []
    for label, cls in (("Score-CAM", grad_cam.ScoreCAM), ("Ablation-CAM", grad_cam.AblationCAM)):
        for layer in ("base1.block11", "base1"):
            module = model.base if layer == "base1" else model.base.blocks[int(layer.split("block")[1]) - 1]
            found.append((f"{label} (pytorch-grad-cam)", [layer], cls, module))
    return found


def play_game(args) -> None:
    import torch

    from convscope.loaded import load

    torch.set_num_threads(args.threads)
    loaded = load(args.run, "cpu")
    model = loaded.model
    classes = loaded.classes
    target = classes.index("wbc")
    items = pointing_set(BCCD)
    if args.limit:
        items = items[: args.limit]
    h, w, _ = loaded.input
    scale = SIDE / h
    tensors = [loaded.tensor(loaded.image(square)) for _, square, _ in items]
    with torch.no_grad():
        predicted = [int(model(x).argmax(1)) for x in tensors]
    centre = ((h - 1) / 2 * scale, (w - 1) / 2 * scale)
    rows = [("centre (baseline)", "-", sum(hit(centre, boxes) for *_, boxes in items), 0.0, 0, len(items))]
    for label, layers, method, how in VARIANTS:
        hits = border = 0
        start = time.perf_counter()
        for x, (_, _, boxes) in zip(tensors, items, strict=True):
            heat, _ = variant_map(model, x, layers, method, how, target)
            r, c = divmod(int(heat.argmax()), heat.shape[1])
            hits += hit(((r + 0.5) * scale - 0.5, (c + 0.5) * scale - 0.5), boxes)
            border += on_border(heat)
        seconds = (time.perf_counter() - start) / len(items)
        name = label + ("" if how == "plain" else f" + {how}")
        rows.append((name, "+".join(layers), hits, seconds, border, len(items)))
        print(f"{name:40s} {'+'.join(layers):40s} {hits}/{len(items)}", flush=True)
    for label, layers, cls, module in [] if args.no_library else library_variants(model, loaded):
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        # 1280 maps at base1: one forward pass each per image (~40 s an image here); 112 at block11
        count = len(items) if layers[0] != "base1" or args.all_library else min(len(items), 10)
        hits = border = 0
        start = time.perf_counter()
        with cls(model=model, target_layers=[module]) as cam:
            if hasattr(cam, "batch_size"):
                cam.batch_size = 64
            for x, (_, _, boxes) in list(zip(tensors, items, strict=True))[:count]:
                heat = cam(input_tensor=x.clone(), targets=[ClassifierOutputTarget(target)])[0]
                r, c = divmod(int(heat.argmax()), heat.shape[1])
                hits += hit(((r + 0.5) * scale - 0.5, (c + 0.5) * scale - 0.5), boxes)
                border += on_border(heat)
        model.zero_grad(set_to_none=True)
        rows.append((label, layers[0], hits, (time.perf_counter() - start) / count, border, count))
        print(f"{label:40s} {layers[0]:40s} {hits}/{count}", flush=True)
    report(args, rows, len(items), predicted.count(target), loaded)


def report(args, rows, total: int, called: int, loaded) -> None:
    facts = common.machine_facts(args.threads)
    print(
        f"\npointing game, BCCD test split: {total} squares 480×480 with a WBC, run {args.run} "
        f"({loaded.run.spec.name}, input {'×'.join(map(str, loaded.input))}); the run calls {called} of them 'wbc'"
    )
    print(f"hit: the peak within {TOLERANCE} px of a WBC box; CPU {facts.get('cpu', '?')}, {args.threads} threads\n")
    print(f"{'method':42s} {'layer':36s} {'hits':>9s} {'%':>6s} {'s/image':>8s} {'peak on border':>15s}")
    table = []
    for name, layer, hits, seconds, border, n in rows:
        edge = f"{border}/{n}" if seconds else "-"
        print(f"{name:42s} {layer:36s} {hits:>4d}/{n:<4d} {hits / n:6.1%} {seconds:8.3f} {edge:>15s}")
        table.append(
            {"method": name, "layer": layer, "hits": hits, "total": n, "seconds_per_image": seconds, "border": border}
        )
    common.write_json(common.result_name("pointing_game", args), {"facts": facts, "rows": table})


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tiles = sub.add_parser("tiles", help="cut the wbc/rest training squares from BCCD's train and val photos")
    tiles.add_argument("out", type=Path)
    play = sub.add_parser("run", help="play the pointing game with a run trained on the tiles")
    play.add_argument("run", type=Path)
    play.add_argument("--threads", type=int, default=2)
    play.add_argument("--limit", type=int, default=0, help="only the first N squares (a smoke test)")
    play.add_argument("--tag", default="")
    play.add_argument("--quick", action="store_true", help=argparse.SUPPRESS)
    play.add_argument("--no-library", action="store_true", help="skip Score-CAM and Ablation-CAM")
    play.add_argument(
        "--all-library", action="store_true", help="Score-CAM and Ablation-CAM at base1 on every square (slow)"
    )
    args = parser.parse_args(argv)
    if not (BCCD / "ImageSets").is_dir():
        print(f"skipped: no BCCD folder at {BCCD} (see ../shared/data/README.md)")
        return
    if args.command == "tiles":
        print(make_tiles(BCCD, args.out))
        return
    if not (args.run / "config.yaml").is_file():
        print(f"skipped: no run at {args.run}; train one as this script's docstring says")
        return
    play_game(args)


if __name__ == "__main__":
    main()
