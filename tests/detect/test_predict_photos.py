"""`detect predict` on phone-photo sizes: boxes in the photo's own (upright) pixels, one box per object in the picture,
a picture of a sensible size with labels that scale and stay on the canvas.

The detector here is an oracle whose answer is known: it finds a red and a green rectangle in the letterboxed input
(sub-pixel, from the rectangles' mass) and writes CenterNet maps for them, so what comes back in photo pixels can be
compared with the rectangles drawn into the photo. It also puts a weaker "fox" peak on the red rectangle, as a real
detector puts a second class on one object. Only the model is replaced; run folder, letterbox, decode, mapping back,
suppression, drawing and the CLI are the real ones.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from torch import nn

from convscope import loaded
from convscope.cli import main
from convscope.config import TrainConfig
from convscope.detect.draw import COLORS, MAX_SIDE, draw_detections, label_rect, picture_scale
from convscope.detect.predict import detect_images, same_object_as, to_image_pixels
from convscope.run import DataInfo, Run
from convscope.spec import NetSpec

NAMES = ("cat", "dog", "fox")  # 0: the red rectangle, 1: the green one, 2: a weaker second guess on the red one
LOGITS = (4.0, 3.0, 0.0)  # scores 0.982, 0.953, 0.5
TOLERANCE = 4.0  # photo pixels (JPEG); one input pixel of a 4000-pixel photo letterboxed to 128 is 31.25 of them


class Oracle(nn.Module):
    """N×3×128×128 input (scaled to [0, 1]: mean 0, std 1) → N×(3 + 4)×32×32 CenterNet maps of its two rectangles."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        heat = torch.full((n, 3, h // 4, w // 4), -20.0)
        size, offset = torch.zeros(n, 2, h // 4, w // 4), torch.zeros(n, 2, h // 4, w // 4)
        for i in range(n):
            red, green = (x[i, 0] - x[i, 1]).clamp(0, 1), (x[i, 1] - x[i, 0]).clamp(0, 1)  # gray padding gives 0
            for classes, mass in (((0, 2), red), ((1,), green)):
                if mass.sum() < 1:
                    continue
                ys, xs = torch.arange(h) + 0.5, torch.arange(w) + 0.5  # pixel centres
                cx, cy = (mass.sum(0) * xs).sum() / mass.sum(), (mass.sum(1) * ys).sum() / mass.sum()
                col, row = int(cx // 4), int(cy // 4)
                size[i, :, row, col] = torch.stack([mass.sum(1).max(), mass.sum(0).max()])  # width, height
                offset[i, :, row, col] = torch.stack([cx / 4 - col, cy / 4 - row])
                for k in classes:
                    heat[i, k, row, col] = LOGITS[k]
        return torch.cat([heat, size, offset], dim=1)


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    """A detector run folder (128×128×3 input, classes cat, dog, fox) whose network is the Oracle (no mirror
    averaging: the Oracle is exact as it is)."""
    spec = NetSpec.from_dict({"input": "128x128x3", "layers": [{"pool": {"kind": "avg", "size": 4}},
                                                               {"detect": {"classes": 3, "channels": 4}}]})  # fmt: skip
    run = Run(tmp_path / "run", TrainConfig(model="oracle", data="photos", tta_flip=False), spec,
              DataInfo("photos", NAMES, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)))  # fmt: skip
    run.path.mkdir()
    (run.path / "config.yaml").write_text(run.config_yaml())
    (run.path / "spec.yaml").write_text(spec.to_yaml())
    monkeypatch.setattr(loaded, "load_model", lambda run, which="best", device="cpu": Oracle())
    return run.path


# Inverse of each EXIF orientation's turn: the stored pixels are the upright picture turned this way.
STORED = {1: None, 3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


def photo(path, size, red, green, orientation=1, quality=95):
    """A black photo of size (width, height) as displayed, with a red and a green rectangle (x1, y1, x2, y2 in
    displayed pixels, right and bottom exclusive), saved with that EXIF orientation."""
    img = Image.new("RGB", size)
    draw = ImageDraw.Draw(img)
    draw.rectangle((red[0], red[1], red[2] - 1, red[3] - 1), fill=(255, 0, 0))
    draw.rectangle((green[0], green[1], green[2] - 1, green[3] - 1), fill=(0, 255, 0))
    if STORED[orientation] is not None:
        img = img.transpose(STORED[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    if path.suffix == ".jpg":
        img.save(path, quality=quality, subsampling=0, exif=exif)
    else:
        img.save(path, exif=exif)
    return path


LANDSCAPE = ((4000, 3000), (1010, 620, 2230, 1415), (2600, 1800, 3500, 2700))
PORTRAIT = ((3000, 4000), (210, 1330, 1645, 2010), (1900, 2950, 2815, 3890))


def test_the_letterbox_of_a_4000x3000_photo_is_inverted_exactly():
    # Letterboxed to 128: scale 128/4000 = 0.032, the 96 rows of photo centred with 16 gray rows above and below.
    boxes = np.array([[32.0, 16.0, 64.0, 112.0], [0.0, 0.0, 128.0, 128.0], [40.0, 50.5, 41.0, 51.0]])
    mapped = to_image_pixels(boxes, 0.032, (0, 16), (4000, 3000))
    assert mapped.tolist() == [[1000.0, 0.0, 2000.0, 3000.0], [0.0, 0.0, 4000.0, 3000.0], [1250.0, 1078.125, 1281.25,
                                                                                             1093.75]]  # fmt: skip
    # The same photo held upright (3000×4000): the bands are left and right.
    assert to_image_pixels(np.array([[16.0, 32.0, 112.0, 64.0]]), 0.032, (16, 0), (3000, 4000)).tolist() == [
        [0.0, 1000.0, 3000.0, 2000.0]
    ]


CASES = [(LANDSCAPE, 1), (PORTRAIT, 1), (PORTRAIT, 6), (PORTRAIT, 8), (LANDSCAPE, 3), (LANDSCAPE, 6)]
IDS = ["4000x3000", "3000x4000", "3000x4000-exif6", "3000x4000-exif8", "4000x3000-exif3", "4000x3000-exif6"]


@pytest.mark.parametrize(("shape", "orientation"), CASES, ids=IDS)
@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_boxes_come_back_in_the_upright_photos_pixels(run_dir, tmp_path, shape, orientation, suffix):
    size, red, green = shape
    path = photo(tmp_path / f"photo{suffix}", size, red, green, orientation)
    [found] = detect_images(run_dir, [str(path)], min_score=0.3)
    assert found.size == size and found.conversion == f"RGB {size[0]}×{size[1]} → letterboxed to 128×128"
    assert found.labels == ("cat", "dog") and found.suppressed == 1  # the fox guess on the cat is left out
    # Measured: within 0.2 px from PNG (the mapping is exact; the rest is the oracle's sub-pixel estimate) and
    # 3.0 px from JPEG (its ringing at the rectangles' edges shifts their mass).
    np.testing.assert_allclose(found.boxes, [red, green], atol=0.5 if suffix == ".png" else 4.0)
    np.testing.assert_allclose(found.scores, [0.98201376, 0.95257413], rtol=1e-6)


def test_json_and_printed_lines_give_the_same_photo_pixels(run_dir, tmp_path, capsys):
    path = photo(tmp_path / "photo.jpg", *LANDSCAPE)
    out = tmp_path / "pictures"
    assert main(["detect", "predict", str(run_dir), str(path), "--json", "--out", str(out)]) == 0
    [entry] = json.loads(capsys.readouterr().out)
    assert entry["size"] == [4000, 3000] and entry["suppressed"] == 1
    assert [(o["label"], o["drawn"]) for o in entry["objects"]] == [("cat", True), ("dog", True)]
    np.testing.assert_allclose([o["box"] for o in entry["objects"]], LANDSCAPE[1:], atol=TOLERANCE)
    assert entry["picture"] == str(out / "photo-detections.jpg")

    assert main(["detect", "predict", str(run_dir), str(path), "--out", str(out)]) == 0
    head, *rows = capsys.readouterr().out.splitlines()
    assert head == (f"{path} (RGB 4000×3000 → letterboxed to 128×128): 2 objects (+1 more box(es) on objects "
                    f"already listed; --all-classes lists them) → {out / 'photo-detections.jpg'}")  # fmt: skip
    printed = [re.fullmatch(r"  (\w+) (0\.\d\d) at x (\d+)–(\d+), y (\d+)–(\d+)", row).groups() for row in rows]
    assert [(label, score) for label, score, *_ in printed] == [("cat", "0.98"), ("dog", "0.95")]
    boxes = [[int(v) for v in (x1, y1, x2, y2)] for _, _, x1, x2, y1, y2 in printed]
    np.testing.assert_allclose(boxes, LANDSCAPE[1:], atol=TOLERANCE + 0.5)  # printed as whole pixels


def test_all_classes_lists_the_second_guess_but_draws_the_same_picture(run_dir, tmp_path, capsys):
    path = photo(tmp_path / "photo.png", *LANDSCAPE)  # PNG: the picture's colours are exact
    assert main(["detect", "predict", str(run_dir), str(path), "--json", "--out", str(tmp_path / "a")]) == 0
    default = json.loads(capsys.readouterr().out)[0]
    args = ["detect", "predict", str(run_dir), str(path), "--json", "--all-classes", "--out", str(tmp_path / "b")]
    assert main(args) == 0
    [entry] = json.loads(capsys.readouterr().out)
    assert [(o["label"], o["drawn"], o.get("same_object_as")) for o in entry["objects"]] == [
        ("cat", True, None),
        ("dog", True, None),
        ("fox", False, 0),  # the same box as the cat, score 0.5: listed, not drawn
    ]
    assert entry["objects"][2]["box"] == entry["objects"][0]["box"] and entry["suppressed"] == 0
    assert default["objects"] == entry["objects"][:2]
    a = np.asarray(Image.open(tmp_path / "a" / "photo-detections.png"))
    b = np.asarray(Image.open(tmp_path / "b" / "photo-detections.png"))
    assert a.shape == (1500, 2000, 3) and np.array_equal(a, b)
    counts = {name: int(np.all(a == _rgb(COLORS[k]), axis=-1).sum()) for k, name in enumerate(NAMES)}
    assert counts["cat"] > 1000 and counts["dog"] > 1000 and counts["fox"] == 0  # the fox box is not drawn

    assert main(["detect", "predict", str(run_dir), str(path), "--all-classes", "--out", str(tmp_path / "b")]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].endswith(": 2 objects → " + str(tmp_path / "b" / "photo-detections.png"))
    assert rows[3].startswith("  fox 0.50 at x ") and rows[3].endswith("(not drawn: the same object as cat 0.98)")


def _rgb(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))


def test_same_object_as_keeps_the_best_box_of_any_class():
    boxes = np.array([
        [0, 0, 10, 10],     # 0: kept
        [0, 1, 10, 11],     # 1: IoU 0.82 with 0 → the same object as 0
        [20, 20, 30, 30],   # 2: elsewhere, kept
        [0, 2.5, 10, 12.5], # 3: IoU 0.60 with 0, 0.74 with 1; 1 is not kept, so neither suppresses 3: kept
        [0, 0, 10, 7],      # 4: IoU 0.70 with 0, exactly the threshold → the same object as 0
    ], dtype=float)  # fmt: skip
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    assert same_object_as(boxes, scores).tolist() == [-1, 0, -1, -1, 0]
    assert same_object_as(boxes[[4, 0]], np.array([0.5, 0.9])).tolist() == [1, -1]  # by score, not by place
    assert same_object_as(np.zeros((0, 4)), np.zeros(0)).tolist() == []


def test_a_photo_picture_is_2000_pixels_with_labels_scaled_and_on_the_canvas():
    image = np.zeros((3000, 4000, 3), dtype=np.uint8)
    boxes = np.array([[3900, 1000, 4000, 1200], [0, 0, 400, 300], [1000, 2900, 1400, 3000]], dtype=float)
    picture = draw_detections(
        image, boxes, np.array([0.9, 0.8, 0.7]), np.array([0, 1, 2]), ("Ankle boot", "Bag", "Coat")
    )
    assert picture.size == (2000, 1500) and picture_scale(4000, 3000) == 0.5 and picture_scale(3000, 4000) == 0.5
    a = np.asarray(picture)
    for k in range(len(boxes)):  # every box's outline and label background lies on the canvas
        ys, xs = np.nonzero(np.all(a == _rgb(COLORS[k]), axis=-1))
        assert len(xs) > 1000 and xs.max() <= 1999 and ys.max() <= 1499
    # The box at the right edge (x 1950–2000 in the picture): its label 'Ankle boot 0.90' is moved left to end at
    # the edge, above the box. Left of the box, that colour is the label alone: its size is the label's.
    ys, xs = np.nonzero(np.all(a[:, :1950] == _rgb(COLORS[0]), axis=-1))
    assert (ys.min(), ys.max() + 1, xs.max()) == (467, 500, 1949) and xs.min() < 1950 - 150  # 33 px high
    assert np.all(a[:, 1999] == _rgb(COLORS[0]), axis=-1)[467:500].all()  # ...and reaches the last column
    # The box touching the top: its label inside, at the top; the box touching the bottom: its label above.
    label = a[0:33, 0:120]
    assert np.all(label[:, 2] == _rgb(COLORS[1]), axis=-1).all() and np.all(label == 0, axis=-1).any()  # black type
    ys, xs = np.nonzero(np.all(a[:1450] == _rgb(COLORS[2]), axis=-1))
    assert ys.max() + 1 == 1450 and 28 <= 1450 - ys.min() <= 40  # 'Coat 0.70': 31 px, no tall letters


def test_a_small_image_is_enlarged_and_a_large_one_capped():
    assert picture_scale(128, 128) == 3 and picture_scale(64, 128) == 3 and picture_scale(1000, 800) == 1
    assert picture_scale(MAX_SIDE, 10) == 1 and picture_scale(8000, 6000) == 0.25
    picture = draw_detections(np.zeros((128, 64, 1), np.uint8), np.array([[1.0, 1, 30, 30]]), np.ones(1), [0], ("a",))
    assert picture.size == (192, 384) and picture.mode == "RGB"


def test_label_rect_places_labels_inside_the_canvas_and_apart():
    canvas = (2000, 1500)
    assert label_rect((100, 500, 300, 700), (150, 40), canvas) == (100, 460, 250, 500)  # above the box
    assert label_rect((1950, 500, 2000, 700), (150, 40), canvas) == (1850, 460, 2000, 500)  # moved left to the edge
    assert label_rect((100, 10, 300, 700), (150, 40), canvas) == (100, 10, 250, 50)  # no room above: inside
    assert label_rect((100, 1480, 300, 1500), (150, 40), canvas) == (100, 1440, 250, 1480)  # at the bottom: above
    assert label_rect((-50, -20, 3000, 1600), (150, 40), canvas) == (0, 0, 150, 40)  # a box larger than the picture
    assert label_rect((0, 0, 10, 10), (3000, 40), canvas) == (0, 0, 3000, 40)  # wider than the picture: cut at 2000
    taken = [(100, 460, 250, 500)]  # the best box's label already sits above this box: the next one goes inside
    assert label_rect((120, 500, 300, 700), (150, 40), canvas, taken) == (120, 500, 270, 540)


@pytest.mark.parametrize(("name", "fmt", "suffix"), [("photo.jpg", "JPEG", "jpg"), ("photo.png", "PNG", "png")])
def test_the_picture_is_a_jpeg_for_a_jpeg_photo_and_a_png_otherwise(run_dir, tmp_path, name, fmt, suffix):
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (3000, 4000, 3), dtype=np.uint8)  # the worst case for file size: pure noise
    noise[620:1415, 1010:2230] = (255, 0, 0)
    Image.fromarray(noise).save(tmp_path / name, **({"quality": 90} if fmt == "JPEG" else {"compress_level": 1}))
    [found] = detect_images(run_dir, [str(tmp_path / name)], out=tmp_path / "out")
    assert found.picture == tmp_path / "out" / f"photo-detections.{suffix}"
    with Image.open(found.picture) as picture:
        assert picture.format == fmt and picture.size == (2000, 1500)
    assert found.picture.stat().st_size < (3_000_000 if fmt == "JPEG" else 13_000_000)  # full size: 36 MB as PNG


def test_a_users_file_where_a_picture_would_go_is_refused_before_any_image_is_read(run_dir, tmp_path, capsys):
    from convscope.files import written_by_convscope

    Image.new("RGB", (64, 48), (200, 30, 30)).save(tmp_path / "photo.png")
    out = tmp_path / "out"
    [found] = detect_images(run_dir, [str(tmp_path / "photo.png")], out=out)
    assert written_by_convscope(found.picture)  # marked: running it again replaces it silently
    detect_images(run_dir, [str(tmp_path / "photo.png")], out=out)
    found.picture.write_bytes(b"a user's own picture")
    argv = ["detect", "predict", str(run_dir), str(tmp_path / "photo.png"), "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (
        err == f"convscope: error: {found.picture}: exists and was not written by convscope; --overwrite replaces it\n"
    )
    assert found.picture.read_bytes() == b"a user's own picture"
    assert main([*argv, "--overwrite"]) == 0 and written_by_convscope(found.picture)


def test_help_says_which_boxes_are_listed_and_drawn(capsys):
    with pytest.raises(SystemExit):
        main(["detect", "predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "a box overlapping a higher-scoring one of any class with IoU >= 0.7 is the same object" in text
    assert "is neither drawn nor listed (--all-classes lists it, marked not drawn)" in text
    assert "NAME-detections.jpg for JPEG photos, NAME-detections.png otherwise; longer side at most 2000 px" in text
