"""The Mistakes page and its API: a run with planted mistakes (a test folder where 3 light images are filed as dark
and 2 dark ones as light) gives exactly those pairs and galleries; a detector gets a one-line 400; the conftest's
'shades' run shows its pairs or says it has none. Browser tests fail on any JavaScript error (conftest `page`)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from helpers import served
from PIL import Image

from convscope.studio.app import create_app

HEADERS = {"x-convscope-studio": "1"}
SHOTS = Path("/tmp/shots")


def _images(folder: Path, shade: str, count: int, start: int, rng) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    low = 0 if shade == "dark" else 195
    for i in range(count):
        Image.fromarray(rng.integers(low, low + 61, (20, 20)).astype(np.uint8)).save(
            folder / f"{shade}-{start + i}.png"
        )


@pytest.fixture(scope="module")
def planted_runs(tmp_path_factory) -> Path:
    """runs/planted: a lenet5 that tells dark from light, tested on a folder with 3 light images filed as dark and 2
    dark ones as light."""
    from convscope.tasks.train import train

    root = tmp_path_factory.mktemp("mistakes")
    rng = np.random.default_rng(0)
    for shade in ("dark", "light"):
        _images(root / "data" / "train" / shade, shade, 40, 0, rng)
        _images(root / "data" / "test" / shade, shade, 10, 100, rng)
    _images(root / "data" / "test" / "dark", "light", 3, 200, rng)
    _images(root / "data" / "test" / "light", "dark", 2, 300, rng)
    runs = root / "runs"
    train(model="lenet5", data=str(root / "data"), epochs=4, batch_size=16, threads=1, out=str(runs / "planted"))
    return runs


@pytest.fixture(scope="module")
def client(planted_runs):
    with TestClient(create_app(planted_runs), base_url="http://127.0.0.1", headers=HEADERS) as test_client:
        yield test_client


def test_the_planted_pairs_and_their_images(client, planted_runs):
    before = sorted(p.name for p in (planted_runs / "planted").rglob("*"))
    answer = client.get("/api/runs/planted/mistakes")
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert (found["tested"], found["wrong"]) == (25, 5)
    assert [(p["true"], p["predicted"], p["count"], len(p["images"])) for p in found["pairs"]] == [
        ("dark", "light", 3, 3),
        ("light", "dark", 2, 2),
    ]
    first = found["pairs"][0]["images"]
    assert [i["predicted_probability"] for i in first] == sorted(
        (i["predicted_probability"] for i in first), reverse=True
    )
    index = first[0]["index"]
    maps = client.get(f"/api/runs/planted/mistakes/{index}").json()
    assert (maps["true"], maps["predicted"], maps["method"]) == ("dark", "light", "HiResCAM")
    assert maps["shape"] == "28×28×1"
    assert all(maps[k].startswith("data:image/png;base64,") for k in ("image", "true_map", "predicted_map"))
    png = client.get(f"/api/runs/planted/mistakes/{index}.png", params={"class_name": "dark"})
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(__import__("io").BytesIO(png.content)).size == (224, 224)  # 28 × 8, enlarged by whole pixels
    assert sorted(p.name for p in (planted_runs / "planted").rglob("*")) == before  # nothing written in the run


def test_refusals_are_one_line(client):
    right = {i["index"] for p in client.get("/api/runs/planted/mistakes").json()["pairs"] for i in p["images"]}
    other = next(i for i in range(25) if i not in right)
    answer = client.get(f"/api/runs/planted/mistakes/{other}")
    assert answer.status_code == 404 and answer.json()["detail"] == (
        f"test image {other} is not among the mistakes shown for planted"
    )
    answer = client.get(f"/api/runs/planted/mistakes/{min(right)}.png", params={"class_name": "purple"})
    assert answer.status_code == 400 and "no class named 'purple'" in answer.json()["detail"]
    assert client.get("/api/runs/nothing/mistakes").status_code == 404
    assert client.get("/runs/nothing/mistakes").status_code == 404


def test_a_detector_gets_a_one_line_400(studio_runs):
    with TestClient(create_app(studio_runs), base_url="http://127.0.0.1", headers=HEADERS) as test_client:
        answer = test_client.get("/api/runs/boxes/mistakes")
        assert answer.status_code == 400
        assert answer.json()["detail"] == (
            "mistakes are for classifiers: boxes is a detector (its AP per class is on its run page)"
        )
        shades = test_client.get("/api/runs/shades/mistakes").json()
        assert shades["tested"] > 0 and shades["wrong"] == sum(p["count"] for p in shades["pairs"])


def test_the_page_shows_the_planted_pairs_and_their_maps(page, planted_runs):
    with served(create_app(planted_runs)) as url:
        page.goto(f"{url}/runs/planted/mistakes")
        page.wait_for_selector("#gallery figure:nth-child(3) img:nth-child(1)")
        page.wait_for_function(
            "[...document.querySelectorAll('#gallery img')].every(i => i.complete && i.naturalWidth)"
        )
        assert page.inner_text("#mistakes-status").startswith(
            "5 of 25 test images are predicted wrong (accuracy 80.0%)"
        )
        rows = page.locator("#pairs tbody tr")
        assert rows.count() == 2
        assert rows.nth(0).inner_text().split() == ["dark", "→", "light", "3"]
        assert page.inner_text("#pair-title") == "dark predicted as light: 3 images"
        assert page.locator("#gallery figure").count() == 3
        assert page.locator("#gallery figure").nth(0).locator("img").count() == 3
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=SHOTS / "mistakes-planted.png", full_page=True)
        rows.nth(1).click()
        page.wait_for_function("document.querySelectorAll('#gallery figure').length === 2")
        assert page.inner_text("#pair-title") == "light predicted as dark: 2 images"
        text = page.inner_text("#gallery")
        # under each map its class, then the probability as a percentage
        assert len(re.findall(r"^predicted: dark\n\d+\.\d+%$", text, re.M)) == 2
        assert len(re.findall(r"^true: light\n\d+\.\d+%$", text, re.M)) == 2
        assert page.locator("#pairs tbody tr.chosen").inner_text().split()[0] == "light"


def test_the_page_of_shades_and_of_a_detector(page):
    page.goto("/runs/shades/mistakes")
    page.wait_for_function("!document.getElementById('mistakes-status').textContent.startsWith('predicting')")
    status = page.inner_text("#mistakes-status")
    if status.startswith("No mistakes"):
        assert page.locator("#found").is_hidden()
    else:
        page.wait_for_selector("#gallery figure")
        assert page.locator("#pairs tbody tr").count() >= 1
    page.goto("/runs/boxes/mistakes")
    page.wait_for_function("document.getElementById('mistakes-error').textContent !== ''")
    assert page.inner_text("#mistakes-error") == (
        "mistakes are for classifiers: boxes is a detector (its AP per class is on its run page)"
    )
    page.goto("/runs/shades")
    page.click("#mistakes-link")
    page.wait_for_url("**/runs/shades/mistakes")
