"""The studio's Try it round trip (upload → prediction, Grad-CAM, feature maps): the upload is decoded once, the run's
weights are read once per server, and the answers are the library's."""

from __future__ import annotations

import io

import numpy as np
import PIL.Image
import pytest
from fastapi.testclient import TestClient

from convscope import weights
from convscope.classify.predict import predict
from convscope.data.images import sample_photo
from convscope.studio.app import create_app


@pytest.fixture
def client(studio_runs):
    app = create_app(studio_runs)
    with TestClient(app, base_url="http://127.0.0.1", headers={"x-convscope-studio": "1"}) as test_client:
        yield test_client


def round_trip(client, photo: bytes) -> tuple[dict, bytes, dict]:
    answer = client.post("/api/runs/shades/predict", files={"image": ("photo.png", photo)}).json()
    token, top = answer["image"], answer["top"][0]["class"]
    gradcam = client.get(f"/api/runs/shades/gradcam?image={token}&class_name={top}")
    maps = client.get(f"/api/runs/shades/featuremaps?image={token}&layer=conv1")
    assert gradcam.status_code == maps.status_code == 200
    return answer, gradcam.content, maps.json()


def test_try_it_decodes_the_upload_once_and_reads_the_weights_once(client, studio_runs, monkeypatch):
    photo = sample_photo("coffee").read_bytes()
    round_trip(client, photo)  # the run's network is loaded here (or was, by an earlier test of this server)
    seen = {"decoded": 0, "weights": 0}
    opened, loaded = PIL.Image.open, weights.load_weights

    def counted_open(*args, **kwargs):
        seen["decoded"] += 1
        return opened(*args, **kwargs)

    def counted_load(*args, **kwargs):
        seen["weights"] += 1
        return loaded(*args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", counted_open)
    monkeypatch.setattr(weights, "load_weights", counted_load)
    answer, png, maps = round_trip(client, photo)
    assert seen == {"decoded": 1, "weights": 0}
    [expected] = predict(studio_runs / "shades", [str(sample_photo("coffee"))], top_k=5, device="cpu")
    assert [(t["class"], t["probability"]) for t in answer["top"]] == expected.top
    assert answer["conversion"] == expected.conversion == "RGB 600×400 → gray 28×28"
    assert PIL.Image.open(io.BytesIO(png)).size == (224, 224)  # 28×28 enlarged 8 times
    assert maps["shape"] == "28×28×6" and maps["shown"] == 6 and np.isfinite([m["max"] for m in maps["maps"]]).all()


def test_try_it_shows_the_input_as_the_network_sees_it_beside_the_upload(page):
    page.goto("/runs/shades/try")
    page.select_option("#sample", "coffee")
    page.click("#use-sample")
    page.wait_for_function("(i => i.complete && i.naturalWidth > 0)(document.getElementById('seen'))")
    page.wait_for_function("(i => i.complete && i.naturalWidth > 0)(document.getElementById('sent'))")
    seen = page.evaluate("(i => [i.naturalWidth, i.naturalHeight])(document.getElementById('seen'))")
    sent = page.evaluate("(i => [i.naturalWidth, i.naturalHeight])(document.getElementById('sent'))")
    assert seen == [224, 224] and sent == [600, 400]  # 28×28 gray, enlarged 8 times; the photo as decoded
    assert page.locator("#seen-shape").inner_text() == "gray 28×28, enlarged"
    # one gray value per 8×8 block: whole pixels, no smoothing
    blocks = page.evaluate("""() => {
        const img = document.getElementById('seen'), c = document.createElement('canvas');
        c.width = img.naturalWidth; c.height = img.naturalHeight;
        const g = c.getContext('2d'); g.drawImage(img, 0, 0);
        const d = g.getImageData(0, 0, c.width, c.height).data;
        let uneven = 0;
        for (let y = 0; y < 224; y += 8) for (let x = 0; x < 224; x += 8)
          if (d[4 * (y * 224 + x)] !== d[4 * ((y + 7) * 224 + x + 7)]) uneven++;
        return uneven;
    }""")
    assert blocks == 0
    assert page.locator("#conversion").inner_text() == "as the network sees it: RGB 600×400 → gray 28×28"
    assert "Where it looked (HiResCAM)" in page.content()
    page.locator("#maps figure").first.wait_for()
    page.screenshot(path="/tmp/shots/network-try.png", full_page=True)


def test_a_detectors_class_map_is_refused_in_one_line(client):
    """A detector has no one class score to explain: the class-map route says so (400), it does not fail (500)."""
    image = client.post("/api/runs/boxes/predict", data={"sample": "astronaut"}).json()["image"]
    answer = client.get(f"/api/runs/boxes/gradcam?image={image}")
    detail = answer.json()["detail"]
    assert answer.status_code == 400 and "\n" not in detail
    assert detail.endswith("class maps (HiResCAM, Grad-CAM) are for classifiers; tiny-det is a detector "
                           "(see its boxes with `convscope detect predict`)")  # fmt: skip
