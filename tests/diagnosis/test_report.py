"""The doctor's report (convscope.diagnosis.report): report.html with a gallery per finding, doctor.json read back
whole, its own files replaced when run again, a user's refused, nothing fetched from elsewhere, and a bounded size."""

import dataclasses
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convscope.diagnosis.doctor import diagnose
from convscope.diagnosis.model import Diagnosis, Example, Finding
from convscope.diagnosis.report import GALLERY, NOTEBOOK, notebook_html, write_report
from convscope.diagnosis.report_tiles import thumbnail
from convscope.errors import OutputError

CLASSES = ("apple", "bear")


def planted(root: Path) -> Path:
    """train/ and test/ of two classes (smooth colour pictures, each distinct), with a copy of a training image in
    test (a leak), a truncated JPEG in train and a gray image among the colour ones."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 10), ("test", 4)):
        for name in CLASSES:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                small = rng.integers(20, 236, (6, 6, 3), dtype=np.uint8)
                Image.fromarray(small).resize((48, 40), Image.Resampling.BICUBIC).save(folder / f"{i:03}.jpg")
    shutil.copy(root / "train/bear/003.jpg", root / "test/bear/copy.jpg")
    data = (root / "train/apple/001.jpg").read_bytes()
    (root / "train/apple/cut.jpg").write_bytes(data[: len(data) // 2])
    small = rng.integers(20, 236, (6, 6, 3), dtype=np.uint8)
    Image.fromarray(small).resize((48, 40), Image.Resampling.BICUBIC).convert("L").save(root / "train/bear/gray.png")
    return root


@pytest.fixture(scope="module")
def diagnosed(tmp_path_factory) -> Diagnosis:
    return diagnose(planted(tmp_path_factory.mktemp("data") / "d"))


def _section(page: str, kind: str) -> str:
    return re.search(rf"<section class=finding data-kind='{kind}'>.*?</section>", page, re.S).group(0)


def test_the_report_shows_each_finding_with_a_tile_per_example(diagnosed, tmp_path):
    path = write_report(diagnosed, tmp_path / "out")
    page = path.read_text()
    assert path == tmp_path / "out/report.html" and (tmp_path / "out/doctor.json").is_file()
    kinds = [f.kind for f in diagnosed.findings]
    assert kinds == ["unreadable", "leak", "mode"]  # serious first
    for finding in diagnosed.findings:
        assert f"{finding.level}</span>{finding.title}</h2>".replace("'", "&#x27;") in page
    assert page.index("Images per class and split") < page.index("unreadable") < page.index("Notes")
    leak = _section(page, "leak")
    assert leak.count('<figure class="tile pair"') == 1 and leak.count("<img ") == 2
    assert 'data-name="test/bear/copy.jpg"' in leak and "train/bear/003.jpg" in leak
    assert "test · bear ↔ train · bear" in leak
    unreadable = _section(page, "unreadable")
    assert unreadable.count("<figure") == 1 and "<img" not in unreadable
    assert "class=none" in unreadable and "damaged or truncated" in unreadable
    assert _section(page, "mode").count('<figure class="tile"') == 1
    # the counts: 10 + 1 + 1 train images per class table row, and the readable total
    assert "<td class=l>readable</td><td>21</td><td>9</td>" in page


def test_doctor_json_reads_back_as_the_same_diagnosis(diagnosed, tmp_path):
    write_report(diagnosed, tmp_path / "out")
    doc = json.loads((tmp_path / "out/doctor.json").read_text())
    assert doc["generator"] == "convscope" and doc["exit_code"] == 1 and doc["out"] == str(tmp_path / "out")
    back = Diagnosis.from_dict(doc)
    assert back == diagnosed
    assert back.count("leak") == 1 and back.finding("leak").examples[0].other == "train/bear/003.jpg"
    # drawn again from the JSON alone: the same sections, placeholders instead of pictures
    write_report(back, tmp_path / "again")
    again = (tmp_path / "again/report.html").read_text()
    assert again.count("<figure") == 3 and "<img" not in again and "read back from doctor.json" in again


def test_running_again_replaces_its_own_files_but_not_a_users(diagnosed, tmp_path):
    out = tmp_path / "out"
    write_report(diagnosed, out)
    first = (out / "report.html").stat().st_mtime_ns
    write_report(diagnosed, out)  # no overwrite needed: both files are convscope's
    assert (out / "report.html").stat().st_mtime_ns >= first
    assert sorted(p.name for p in out.iterdir()) == ["doctor.json", "report.html"]  # no temporary file left
    (out / "report.html").write_text("<html>my page</html>")
    with pytest.raises(OutputError, match="report.html: exists and was not written by convscope"):
        write_report(diagnosed, out)
    assert (out / "report.html").read_text() == "<html>my page</html>"
    write_report(diagnosed, out, overwrite=True)
    (out / "doctor.json").write_text('{"mine": 1}')
    with pytest.raises(OutputError, match="doctor.json: exists and was not written by convscope"):
        write_report(diagnosed, out)
    assert (out / "doctor.json").read_text() == '{"mine": 1}'


def test_the_page_needs_nothing_from_elsewhere(diagnosed, tmp_path):
    page = write_report(diagnosed, tmp_path / "out").read_text()
    assert "http://" not in page and "https://" not in page and "<script" not in page
    links = re.findall(r"""(?:src|href)=["']?([^"' >]+)""", page)
    assert links and all(link.startswith(("data:image/", "#finding-")) for link in links)
    assert "<meta name=generator content=convscope>" in page


def test_a_long_finding_shows_its_first_examples_and_says_how_many_more(diagnosed, tmp_path):
    """10,000 examples: GALLERY tiles, the rest counted, the page a few hundred KB (thumbnails only of those shown)."""
    names = [f"train/apple/{i:03}.jpg" for i in range(10)]
    many = tuple(Example(names[i % 10], "train", "apple", f"number {i}") for i in range(10_000))
    big = Finding("properties", "tiny", "10000 tiny image(s)", 10_000, False, many, "look")
    bigger = dataclasses.replace(diagnosed, findings=(big,))
    bigger.listing = diagnosed.listing
    page = write_report(bigger, tmp_path / "out").read_text()
    assert page.count("<figure") == GALLERY and page.count("<img ") == GALLERY
    assert f"… {10_000 - GALLERY:,} more in doctor.json" in page
    assert len(page.encode()) < 200_000
    cell = notebook_html(bigger)
    assert cell.count("<figure") == NOTEBOOK and f"… {10_000 - NOTEBOOK:,} more" in cell
    assert "<html" not in cell and cell.startswith("<style>")


def test_the_notebook_shows_the_counts_and_each_finding(diagnosed):
    cell = diagnosed._repr_html_()
    assert "Images per class and split" in cell and cell.count("<section class=finding") == 3
    assert cell.count('<figure class="tile pair"') == 1
    assert "Image properties" not in cell  # the page's detail, not the cell's


def test_tiny_images_are_enlarged_with_their_pixels_kept_and_boxes_drawn():
    pixels = np.zeros((32, 32, 3), np.uint8)
    pixels[:, 16:] = 200
    small = np.asarray(thumbnail(pixels))
    assert small.shape == (96, 96, 3)  # 3× nearest
    assert (small[:, :48] == 0).all() and (small[:, 48:] == 200).all()
    photo = np.full((400, 600, 3), 128, np.uint8)
    boxed = np.asarray(thumbnail(photo, box=(300, 200, 450, 300)))
    # the part around the box (its 150-px width again on every side, clipped: x 150–600, y 50–400), 450 px → 96
    assert boxed.shape == (75, 96, 3)
    red = np.argwhere((boxed[:, :, 0] > 200) & (boxed[:, :, 1] < 80))
    assert (
        red.size and (red[:, 1].min(), red[:, 1].max()) == (32, 64) and (red[:, 0].min(), red[:, 0].max()) == (32, 53)
    )


def test_a_detection_example_with_a_box_is_drawn_with_it(diagnosed, tmp_path):
    boxed = Example("train/bear/000.jpg", "train", None, "no prediction near this box", box=(4.0, 4.0, 30.0, 30.0))
    finding = Finding("labels", "missed-box", "1 box with no prediction", 1, True, (boxed,), "check it")
    cam = np.zeros((40, 48, 3), np.uint8)
    pictured = Example("train/bear/001.jpg", "train", "bear", "labelled bear, predicted apple (0.97)")
    labels = Finding("labels", "suspicious", "1 suspicious label", 1, True, (pictured,), "look")
    shown = dataclasses.replace(diagnosed, findings=(finding, labels), pictures={pictured.name: cam})
    shown.listing = diagnosed.listing
    page = write_report(shown, tmp_path / "out").read_text()
    assert _section(page, "missed-box").count("<img ") == 1
    suspicious = _section(page, "suspicious")
    assert suspicious.count('<figure class="tile cam"') == 1 and suspicious.count("<img ") == 2
    assert "class maps: given | predicted" in suspicious


def test_an_unreadable_files_placeholder_holds_a_word_and_its_reason_is_said_once_below(tmp_path):
    """A truncated JPEG, a zero-byte file and a text file named .jpg: each tile's grey box says "unreadable" (the
    reason, a sentence, would spill out of 96 pixels over the file's name), the reason once, under the name."""
    root = planted(tmp_path / "d")
    (root / "train/apple/empty.jpg").write_bytes(b"")
    (root / "train/bear/notes.jpg").write_text("my notes, not a picture\n" * 5)
    diagnosis = diagnose(root)
    for html_text in (write_report(diagnosis, tmp_path / "out").read_text(), notebook_html(diagnosis)):
        unreadable = _section(html_text, "unreadable")
        tiles = re.findall(r'<figure class="tile" data-name="([^"]+)">(.*?)</figure>', unreadable, re.S)
        assert sorted(name for name, _ in tiles) == [
            "train/apple/cut.jpg",
            "train/apple/empty.jpg",
            "train/bear/notes.jpg",
        ]
        for name, tile in tiles:
            assert re.findall(r"<div class=none[^>]*>([^<]*)</div>", tile) == ["unreadable"]
            why = next(e.why for e in diagnosis.finding("unreadable").examples if e.name == name)
            caption = re.search(r"<figcaption>(.*?)</figcaption>", tile, re.S).group(1)
            seen = re.sub(r"<[^>]+>", " ", tile)  # the text shown, tooltips (attributes) left out
            assert caption.count(why) == 1 and seen.count(why) == 1
            assert f"<span class=name>{name.rsplit('/', 1)[-1]}</span>" in tile
        reasons = {e.why for e in diagnosis.finding("unreadable").examples}
        assert any("truncated" in r for r in reasons) and any("zero bytes" in r for r in reasons)


def test_advice_in_backticks_is_shown_as_code_and_the_rest_escaped(diagnosed, tmp_path):
    advice = "`convscope detect lint DATA` lists them; <b>not bold</b> and `a<b` too; one ` alone"
    finding = Finding("annotations", "bad-box", "2 bad boxes", 2, True, (), advice)
    shown = dataclasses.replace(diagnosed, findings=(finding,))
    shown.listing = diagnosed.listing
    expected = (
        "<p class=advice><code>convscope detect lint DATA</code> lists them; &lt;b&gt;not bold&lt;/b&gt; and "
        "<code>a&lt;b</code> too; one ` alone</p>"
    )
    assert expected in write_report(shown, tmp_path / "out").read_text()
    assert expected in notebook_html(shown)


def test_a_diagnosis_read_back_says_once_that_it_has_no_pictures(diagnosed, tmp_path):
    write_report(diagnosed, tmp_path / "out")
    back = Diagnosis.from_dict(json.loads((tmp_path / "out/doctor.json").read_text()))
    page = write_report(back, tmp_path / "again").read_text()
    assert page.count("no pictures: this diagnosis was read back from doctor.json") == 1
    assert page.count(">no picture</div>") == 4  # the unreadable file, the leak's pair, the gray image
