"""The studio's defences, one test each: loopback by default (a warning when bound elsewhere), the upload limit
(413), images decoded by convscope whatever the client says they are, uploads never stored under the client's
name, runs addressed inside --runs only (404 otherwise), and version floors above the published multipart
denial-of-service advisories."""

from __future__ import annotations

import io
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from packaging.version import Version
from PIL import Image

from convscope.cli import main
from convscope.studio.app import create_app


def png(size=32) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def client(studio_runs):
    app = create_app(studio_runs, max_upload=64 * 1024)
    with TestClient(app, base_url="http://127.0.0.1", headers={"x-convscope-studio": "1"}) as test_client:
        yield test_client


def test_it_listens_on_this_machine_by_default_and_warns_when_told_otherwise(monkeypatch, capsys, tmp_path):
    import uvicorn

    served = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: served.append(sockets[0].getsockname()[:2]))
    assert main(["serve", "--runs", str(tmp_path), "--port", "0"]) == 0
    assert served[-1][0] == "127.0.0.1" and served[-1][1] > 0 and "warning" not in capsys.readouterr().err
    assert main(["serve", "--runs", str(tmp_path), "--host", "0.0.0.0", "--port", "0"]) == 0
    err = capsys.readouterr().err
    assert served[-1][0] == "0.0.0.0" and "warning: listening on 0.0.0.0: other machines can reach" in err
    main(["serve", "--runs", str(tmp_path), "--host", "::1", "--port", "0"])  # 2 where this machine has no IPv6
    assert "warning" not in capsys.readouterr().err


def test_an_upload_over_the_limit_is_refused_with_413_with_or_without_its_length(client):
    big = png(400)  # about 480 KB of noise, over the 64 KiB limit of this app
    answer = client.post("/api/runs/shades/predict", files={"image": ("big.png", big, "image/png")})
    assert answer.status_code == 413 and answer.json() == {"detail": "the upload is larger than 64 KiB"}

    def chunks():  # no Content-Length: the body is counted as it arrives
        head = b'--b\r\nContent-Disposition: form-data; name="image"; filename="x.png"\r\n\r\n'
        body = head + big + b"\r\n--b--\r\n"
        for i in range(0, len(body), 8192):
            yield body[i : i + 8192]

    answer = client.post(
        "/api/runs/shades/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert answer.status_code == 413 and answer.json() == {"detail": "the upload is larger than 64 KiB"}
    assert client.post("/api/runs/shades/predict", files={"image": ("ok.png", png(), "image/png")}).status_code == 200


def test_images_are_decoded_by_convscope_whatever_the_client_calls_them(client):
    as_text = client.post("/api/runs/shades/predict", files={"image": ("notes.txt", png(), "text/plain")})
    assert as_text.status_code == 200 and as_text.json()["upload"] == "RGB 32×32"
    script = b"<svg onload=alert(1)>"
    fake = client.post("/api/runs/shades/predict", files={"image": ("photo.png", script, "image/png")})
    assert fake.status_code == 400
    detail = fake.json()["detail"]
    assert detail.startswith("the upload is not an image convscope reads: ") and "\n" not in detail
    assert "convscope-studio-" not in detail  # the temporary file's name is not shown


def test_uploads_are_never_stored_under_the_name_the_client_chose(client, studio_runs):
    answer = client.post("/api/runs/shades/predict", files={"image": ("../../evil-name.png", png(), "image/png")})
    assert answer.status_code == 200
    store = client.app.state.uploads.folder
    names = [p.name for p in store.iterdir()]
    assert answer.json()["image"] in names and not any("evil" in n for n in names)
    # where the client's name would lead from the store, the server's folder or the runs' (no global search of /tmp:
    # other tests run beside this one)
    for root in (store, store / "x", Path.cwd(), Path.cwd() / "x", studio_runs, studio_runs / "shades"):
        assert not (root / "../../evil-name.png").resolve().exists() and not (root / "evil-name.png").exists()
    assert not list(studio_runs.parent.glob("**/evil-name.png"))


@pytest.mark.parametrize(
    "url",
    [
        "/api/runs/..%2F..%2Fetc",
        "/api/runs/%2E%2E/metrics",
        "/api/runs/.hidden",
        "/runs/..%2Fshades",
        "/api/runs/shades/pictures/..%2Fconfig.yaml",
        "/api/runs/shades/pictures/train.log",
        "/api/runs/outside",
        "/api/runs/nothing-here",
        "/static/..%2Fapp.py",
    ],
)
def test_runs_are_reached_by_their_name_inside_the_runs_folder_only(client, studio_runs, url):
    outside = studio_runs.parent / "elsewhere"
    outside.mkdir(exist_ok=True)
    (outside / "config.yaml").write_text("train: {}\n")
    if not (studio_runs / "outside").exists():
        (studio_runs / "outside").symlink_to(outside)  # a link inside --runs to a folder outside it
    answer = client.get(url)
    assert answer.status_code == 404, (url, answer.status_code, answer.text[:200])
    assert "train:" not in answer.text and "import" not in answer.text


def test_other_sites_get_no_answer_and_cannot_make_it_act(client):
    """DNS rebinding: a page on another name that resolves here is refused by its Host header. Cross-site request
    forgery: a request that changes something without the pages' header (which another site cannot send) is 403."""
    assert client.get("/api/runs", headers={"host": "evil.example"}).status_code == 400
    assert client.get("/api/runs", headers={"host": "localhost:8000"}).status_code == 200
    forged = client.post("/api/jobs", data={"model": "lenet5", "data": "mnist"}, headers={"x-convscope-studio": ""})
    assert forged.status_code == 403 and "studio's pages" in forged.json()["detail"]
    assert client.app.state.jobs.list() == []
    upload = client.post("/api/runs/shades/predict", data={"sample": "camera"}, headers={"x-convscope-studio": ""})
    assert upload.status_code == 403


def test_the_multipart_parsers_are_above_their_denial_of_service_advisories():
    assert Version(version("starlette")) >= Version("1.0.1")  # GHSA-86qp-5c8j-p5mr
    assert Version(version("python-multipart")) >= Version("0.0.30")  # GHSA-pp6c-gr5w-3c5g, GHSA-5rvq-cxj2-64vf
    floors = Path(__file__).parents[2].joinpath("pyproject.toml").read_text()
    assert '"starlette>=1.1"' in floors and '"python-multipart>=0.0.31"' in floors
