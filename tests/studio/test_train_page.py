"""The Train page (issue 30, round two): a spec written on the page, linted as it is typed with each problem on its
line; the training settings bounded in the studio's words; the command and recipe shown before starting, and what
starts is that command; a written spec trains, and its run keeps it.

Round three (a new user's trial): the preview's run folder is the pattern it will have, named when it starts; a started
written spec's command reads the run's own spec.yaml (the studio's copy is temporary); a data root or a detection data
set given to a classifier is refused in one line; a long line of the spec scrolls sideways."""

from __future__ import annotations

import re
import shlex
import time
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from helpers import make_folder

from convscope.presets import get_preset, resolve_spec
from convscope.spec import NetSpec
from convscope.studio.app import create_app
from convscope.studio.guards import SPEC_CHARS
from convscope.studio.jobs import devices

HEADERS = {"x-convscope-studio": "1"}
# A tiny classifier of shades-data's 20×20 gray images: 6 lines, layer i on line i + 3.
TINY = """name: tiny-shades
input: 20x20x1
layers:
- conv: {filters: 4, size: 3}
- pool: {kind: max, size: 2}
- flatten
- dense: {units: 2}
"""
TINY_PARAMS = (3 * 3 * 1 * 4 + 4) + (9 * 9 * 4 * 2 + 2)  # conv 40, dense 650
TOO_LARGE = TINY.replace("{filters: 4, size: 3}", "{filters: 4, size: 3}\n- conv: {filters: 8, size: 20}")  # line 5


@pytest.fixture
def client(tmp_path):
    data = make_folder(tmp_path / "datasets" / "shades", per_class=4, size=20)
    app = create_app(tmp_path / "runs", data_roots=[data.parent])
    with TestClient(app, base_url="http://127.0.0.1", headers=HEADERS) as client:
        client.data = data
        yield client


def lint(client, text: str) -> dict:
    answer = client.post("/api/lint", json={"spec": text})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_sound_spec_lints_to_its_summary_table(client):
    answer = lint(client, TINY)
    assert answer["ok"] and answer["errors"] == [] and answer["name"] == "tiny-shades"
    at = {name: answer["columns"].index(name) for name in ("layer", "output H×W×C", "params")}
    table = [[row[at["layer"]], row[at["output H×W×C"]], row[at["params"]]] for row in answer["rows"]]
    assert table == [["input", "20×20×1", ""], ["conv1", "18×18×4", "40"], ["pool1", "9×9×4", "0"],
                     ["flatten1", "324", "0"], ["dense1", "2", "650"]]  # fmt: skip
    assert answer["params"] == TINY_PARAMS == 690 and answer["lines"] == [None, 4, 5, 6, 7]
    assert answer["totals"][0] == "Total params: 690"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        (TOO_LARGE, 5, "layer 2 (conv 20×20, stride 1, valid): input is 18×18×4, the window needs at least 20×20"),
        (TINY.replace("- flatten\n", ""), 6, "layer 3 (dense 2): dense needs a flat vector"),
        (TINY.replace("filters: 4", "filtrs: 4"), 4, "unknown key 'filtrs' (did you mean 'filters'?)"),
        (TINY.replace("- flatten", "- flaten"), 6, "unknown layer kind 'flaten' (did you mean 'flatten'?)"),
        (TINY.replace("20x20x1", "20x20"), 2, "input must be H×W×C with positive integers"),
        (TINY.replace("{kind: max, size: 2}", "{kind: max, size: 2"), 5, "not valid YAML"),  # where { opened
        ("inputs: 1\n" + TINY, 1, "unknown key 'inputs' (did you mean 'input'?)"),
        (TINY.replace("input: 20x20x1\n", ""), None, "'input' is missing"),
        ("", None, "a spec must be a mapping with 'input' and 'layers'"),
    ],
)
def test_a_spec_that_cannot_run_is_one_problem_on_its_line(client, text, line, words):
    answer = lint(client, text)
    assert not answer["ok"] and len(answer["errors"]) == 1
    assert answer["errors"][0]["line"] == line and words in answer["errors"][0]["message"], answer


def test_the_lint_is_bounded_in_the_studios_words(client):
    long = client.post("/api/lint", json={"spec": "x" * (SPEC_CHARS + 1)})
    assert (long.status_code, long.json()) == (
        422, {"detail": f"spec must be at most {SPEC_CHARS:,} characters. Received: {SPEC_CHARS + 1:,}"})  # fmt: skip
    number = client.post("/api/lint", json={"spec": 5})
    assert (number.status_code, number.json()["detail"]) == (
        422,
        "spec must be the text of a spec (YAML). Received: '5'",
    )


def test_a_preset_answers_its_spec_as_yaml(client):
    answer = client.get("/api/presets/lenet5").json()
    assert answer["name"] == "lenet5" and NetSpec.from_dict(yaml.safe_load(answer["yaml"])) == get_preset("lenet5")
    assert lint(client, answer["yaml"])["params"] == 61_706
    missing = client.get("/api/presets/lenet6")
    assert missing.status_code == 404 and missing.json()["detail"].startswith("no preset named 'lenet6'; presets: ")


def test_the_preview_says_the_command_and_the_recipe(client):
    form = {"model": "lenet5", "data": str(client.data), "epochs": "3", "batch_size": "16", "lr": "0.01",
            "augment": "flip,translate=2", "per_class": "3", "device": "cpu"}  # fmt: skip
    answer = client.post("/api/jobs/preview", data=form).json()
    assert answer["name"] == "lenet5-shades-YYYYMMDD-HHMMSS"  # named when it starts: the preview says the pattern
    assert answer["named"] == "the run folder is named when it starts: YYYYMMDD-HHMMSS is its date and time"
    out = client.app.state.runs / answer["name"]
    assert answer["command"] == shlex.join(["convscope", "train", "--model", "lenet5", "--data", str(client.data),
        "--epochs", "3", "--batch-size", "16", "--lr", "0.01", "--augment", "flip,translate=2", "--per-class", "3",
        "--device", "cpu", "--out", str(out)])  # fmt: skip
    assert answer["settings"] == ("epochs 3, batch_size 16, optimizer adamw, lr 0.01, schedule onecycle, augment "
                                  "flip,translate=2, per_class 3, device cpu")  # fmt: skip
    assert answer["recipe"] == "" and not out.exists() and client.get("/api/jobs").json() == []  # nothing started
    recipe = client.post("/api/jobs/preview", data={"model": "cifar-fast", "data": "cifar10", "epochs": "1"}).json()
    assert recipe["recipe"].startswith("cifar-fast trains with its recipe: epochs 1 (given; recipe 14), batch_size 256")
    # The preset's own spec, unchanged, is the preset (its recipe applies); an edited one is a file of the studio's.
    same = client.post("/api/jobs/preview", data={**form, "spec": client.get("/api/presets/lenet5").json()["yaml"]})
    assert "--model lenet5 " in same.json()["command"] and same.json()["spec_file"] is None
    mine = client.post("/api/jobs/preview", data={**form, "spec": TINY}).json()
    spec_file = Path(mine["spec_file"])
    assert f"--model {spec_file} " in mine["command"] and mine["name"].startswith("tiny-shades-shades-")
    assert spec_file.is_relative_to(client.app.state.uploads.folder) and spec_file.read_text() == TINY
    written = sorted(str(p.relative_to(client.data)) for p in client.data.rglob("*"))
    images = [f"{shade}/{i:03}.png" for shade in ("dark", "light") for i in range(4)]
    assert written == sorted(["dark", "light", *images])  # nothing was written beside the data


@pytest.mark.parametrize(
    ("fields", "status", "detail"),
    [
        ({"spec": TOO_LARGE}, 400, "spec, line 5: layer 2 (conv 20×20, stride 1, valid): input is 18×18×4, the "
                                   "window needs at least 20×20. Received input 18×18 after layer 1 (conv 3×3, "
                                   "stride 1, valid)."),
        ({"batch_size": "0"}, 422, "batch_size must be an integer from 1 to 4096 images. Received: '0'"),
        ({"lr": "nan"}, 422, "lr must be a number from 1e-06 to 10. Received: 'nan'"),
        ({"lr": "11", "per_class": "0"}, 422, "lr must be a number from 1e-06 to 10. Received: '11'; per_class must "
                                              "be an integer from 1 to 100000 images. Received: '0'"),
        ({"augment": "flop"}, 422, "augment: expected words like 'flip,translate=2,cutout=8' or 'none'. Received: "
                                   "'flop'"),
        ({"augment": "flip," * 30}, 422, "augment must be at most 100 characters. Received: 150"),
        ({"device": "cuda:7"}, 422, "device must be one of this machine's: auto, cpu"),
        ({"spec": "x" * (SPEC_CHARS + 1)}, 422, f"spec must be at most {SPEC_CHARS:,} characters of YAML"),
    ],
)  # fmt: skip
def test_every_field_is_checked_before_anything_starts(client, fields, status, detail):
    if "device" in fields:  # what this machine has
        detail = f"device must be one of this machine's: {', '.join(devices())}. Received: 'cuda:7'"
    form = {"model": "lenet5", "data": str(client.data), "epochs": "1", **fields}
    for url in ("/api/jobs/preview", "/api/jobs"):
        answer = client.post(url, data=form)
        assert answer.status_code == status and answer.json()["detail"].startswith(detail), answer.text
        assert "\n" not in answer.json()["detail"]
    assert client.get("/api/jobs").json() == [] and list(client.app.state.runs.iterdir()) == []


def _finished(client, name: str, seconds: float = 240) -> dict:
    deadline = time.monotonic() + seconds
    while (job := next(j for j in client.get("/api/jobs").json() if j["name"] == name))["state"] == "running":
        assert time.monotonic() < deadline, "the training did not finish in time"
        time.sleep(0.5)
    return job


def test_a_written_spec_trains_and_its_run_keeps_it(tmp_path, studio_data):
    app = create_app(tmp_path / "runs", data_roots=[studio_data.parent])
    form = {"model": "lenet5", "data": str(studio_data), "epochs": "1", "batch_size": "16", "device": "cpu",
            "spec": TINY}  # fmt: skip
    with TestClient(app, base_url="http://127.0.0.1", headers=HEADERS) as client:
        preview = client.post("/api/jobs/preview", data=form).json()
        started = client.post("/api/jobs", data=form)
        assert started.status_code == 200, started.text
        name = started.json()["name"]
        run = tmp_path / "runs" / name
        assert re.fullmatch(r"tiny-shades-shades-data-\d{8}-\d{6}", name), name
        # What was shown, but reading the run's own spec.yaml: the studio's copy goes when the studio stops.
        shown = preview["command"].replace(preview["name"], name).replace(preview["spec_file"], str(run / "spec.yaml"))
        assert started.json()["command"] == shown and started.json()["resume"] == f"convscope train --resume {run}"
        job = _finished(client, name)
    assert job["state"] == "finished", (job, (app.state.uploads.folder / f"{name}.log").read_text()[-2000:])
    assert NetSpec.from_dict(yaml.safe_load((run / "spec.yaml").read_text())) == NetSpec.from_dict(yaml.safe_load(TINY))
    # The studio's copy went with the studio; the shown command's --model, the run's own, reads as the spec written.
    assert not Path(preview["spec_file"]).exists()
    assert resolve_spec(str(run / "spec.yaml")) == NetSpec.from_dict(yaml.safe_load(TINY))
    config = yaml.safe_load((run / "config.yaml").read_text())["train"]
    assert (config["epochs"], config["batch_size"], config["device"]) == (1, 16, "cpu")
    assert len((run / "metrics.csv").read_text().strip().splitlines()) == 2  # the header and epoch 1


def test_the_page_lints_as_it_is_typed_and_previews_the_command(page, studio_data):
    shots = Path("/tmp/shots")
    shots.mkdir(exist_ok=True)
    page.goto("/train")
    page.locator("#summary-table").wait_for()  # the default preset's spec, linted
    assert page.locator("#spec").input_value().startswith("name: fashion-fast")
    page.select_option("#model", "lenet5")
    page.wait_for_function("() => document.querySelector('#summary b')?.textContent === 'lenet5'")
    page.fill("#spec", TINY)
    page.wait_for_function("() => document.querySelector('#summary b')?.textContent === 'tiny-shades'")
    # A bad line typed key by key after line 4 (the conv): a 20×20 window on the 18×18 maps.
    page.evaluate("""() => { const s = document.querySelector('#spec');
                             const end = s.value.indexOf('\\n', s.value.indexOf('- conv'));
                             s.focus(); s.setSelectionRange(end, end); }""")
    page.keyboard.type("\n- conv: {filters: 8, size: 20}")
    problem = page.locator("#spec-error")
    page.wait_for_function("() => document.querySelector('#spec-error').textContent.includes('at least 20×20')")
    assert problem.get_attribute("data-line") == "5"
    assert problem.inner_text().startswith("line 5: layer 2 (conv 20×20, stride 1, valid): input is 18×18×4")
    editor, box = page.locator("#spec").bounding_box(), problem.bounding_box()
    assert editor["y"] + 8 + 5 * 20 <= box["y"] <= editor["y"] + 8 + 5 * 20 + 4  # just under line 5
    assert page.locator("#summary-table").count() == 0
    page.screenshot(path=shots / "train-error.png", full_page=True)
    page.keyboard.press("ArrowLeft")  # fixed: size 20 → 3
    page.keyboard.press("Backspace")
    page.keyboard.press("Backspace")
    page.keyboard.type("3")
    page.locator("#summary-table tr", has_text="conv2").wait_for()
    assert not problem.is_visible()
    cells = [[c.inner_text() for c in row.locator("td").all()] for row in page.locator("#summary-table tr").all()[1:]]
    assert [row[1:4:2] + row[4:] for row in cells] == [["input", "20×20×1", ""], ["conv1", "18×18×4", "40"],
        ["conv2", "16×16×8", "296"], ["pool1", "8×8×8", "0"], ["flatten1", "512", "0"],
        ["dense1", "2", "1,026"]]  # fmt: skip
    assert page.locator("#summary").inner_text().count("Total params: 1,362") == 1  # 40 + 296 + 1,026
    page.fill("#data", str(studio_data))
    page.fill("#epochs", "1")
    page.fill("#batch_size", "16")
    page.select_option("#device", "cpu")
    page.wait_for_function(
        "() => document.querySelector('#command').textContent.includes('--epochs 1 --batch-size 16 --device cpu')"
    )
    command = page.locator("#command").inner_text()
    assert re.fullmatch(rf"convscope train --model \S+/specs/[0-9a-f]{{16}}\.yaml --data {re.escape(str(studio_data))}"
                        r" --epochs 1 --batch-size 16 --device cpu --out \S+/tiny-shades-shades-data-YYYYMMDD-HHMMSS",
                        command), command  # fmt: skip
    assert "settings: epochs 1, batch_size 16, optimizer adamw" in page.locator("#recipe").inner_text()
    assert page.locator("#named").inner_text().startswith("the run folder is named when it starts")
    page.screenshot(path=shots / "train-summary.png", full_page=True)


def _voc(folder: Path) -> Path:
    """A Pascal VOC detection layout (what format_of recognises): Annotations/*.xml beside JPEGImages/."""
    (folder / "Annotations").mkdir(parents=True)
    (folder / "Annotations" / "a.xml").write_text("<annotation><filename>a.jpg</filename></annotation>")
    (folder / "JPEGImages").mkdir()
    (folder / "JPEGImages" / "a.jpg").write_bytes(b"")
    return folder


def test_a_data_root_or_a_detection_set_is_refused_for_a_classifier(tmp_path):
    root = tmp_path / "data"
    cats = make_folder(root / "cats-dogs" / "train", per_class=2, size=8).parent
    make_folder(cats / "test", per_class=2, size=8)
    voc = _voc(root / "cells-voc")
    make_folder(root / "shades", per_class=2, size=8)  # a data set of its own: fine
    app = create_app(tmp_path / "runs", data_roots=[root])
    expected = "expected one subfolder of images per class (or train/ and test/ of them)"
    cases = {
        str(root): f"data {root}: its class folders cats-dogs, cells-voc are data sets themselves (train/ or test/, "
                   f"or a detection layout): give one of them, e.g. {cats}; {expected}",
        str(voc): f"data {voc}: is a detection data set (voc layout), but the network is a classifier: {expected}",
    }  # fmt: skip
    with TestClient(app, base_url="http://127.0.0.1", headers=HEADERS) as client:
        for data, detail in cases.items():
            for url in ("/api/jobs/preview", "/api/jobs"):
                answer = client.post(url, data={"model": "lenet5", "data": data, "epochs": "1"})
                assert (answer.status_code, answer.json()["detail"]) == (400, detail)
        assert client.get("/api/jobs").json() == [] and list(client.app.state.runs.iterdir()) == []
        for data in (cats, root / "shades"):  # a data set with train/ and test/, a flat one
            answer = client.post("/api/jobs/preview", data={"model": "lenet5", "data": str(data), "epochs": "1"})
            assert answer.status_code == 200, answer.text


def test_a_long_line_of_the_spec_scrolls_sideways_with_the_gutter_and_band_in_place(page):
    long = TINY.replace(
        "{filters: 4, size: 3}", "{filters: 4, size: 3, activation: relu" + ", padding: valid" * 8 + "}"
    )
    page.goto("/train")
    page.locator("#summary-table").wait_for()
    page.fill("#spec", long.replace("- flatten\n", ""))  # line 6: dense without flatten, a problem to band
    page.wait_for_function("() => document.querySelector('#spec-error').dataset.line === '6'")
    sizes = page.evaluate("""() => { const s = document.querySelector('#spec'); s.scrollLeft = 10000;
        return [s.scrollWidth, s.clientWidth, s.scrollLeft, s.scrollHeight, s.clientHeight,
                getComputedStyle(s).overflowX]; }""")
    width, seen, left, tall, high, overflow = sizes
    assert overflow == "auto" and width > seen and left == width - seen > 0  # the line's end can be reached
    assert tall == high  # no vertical scroll: line n stays at the gutter's n
    spec, gutter = page.locator("#spec").bounding_box(), page.locator("#gutter").bounding_box()
    band = page.locator("#bad-line").bounding_box()
    assert spec["y"] == gutter["y"] and band["y"] == spec["y"] + 8 + 5 * 20  # line 6's band, beside number 6
    assert gutter["x"] < spec["x"] and page.locator("#gutter").inner_text().split("\n")[5] == "6"
    box, editor = page.locator("#spec-error").bounding_box(), page.locator("#editor").bounding_box()
    assert box["y"] + box["height"] <= editor["y"] + editor["height"]  # the problem under the last lines, whole
    shots = Path("/tmp/shots")
    shots.mkdir(exist_ok=True)
    page.screenshot(path=shots / "train-v2.png", full_page=True)
