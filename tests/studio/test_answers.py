"""What the studio answers to requests it refuses: a ragged, non-finite or huge filter (422 naming the kernel, never
a 500), every validation error of every route as one line in the studio's words (never pydantic's), a relative
data folder looked up in the data roots, and a run that is not served because a file links outside it (404 saying
which file, logged once)."""

from __future__ import annotations

import logging
import math
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from convscope.studio import jobs as studio_jobs
from convscope.studio.app import create_app

HEADERS = {"x-convscope-studio": "1"}
PYDANTIC_WORDS = ("Input should", "Field required", "Value error", "valid dictionary", "JSON decode error")


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    runs = tmp_path_factory.mktemp("answers") / "runs"
    with TestClient(create_app(runs), base_url="http://127.0.0.1", headers=HEADERS) as test_client:
        yield test_client


def explain_raw(client, body: str):
    """POST /api/explain with `body` as it is (JSON with NaN or Infinity, or not JSON at all)."""
    return client.post("/api/explain", content=body, headers={"content-type": "application/json"})


def one_line(answer, status: int = 422) -> str:
    assert answer.status_code == status, answer.text
    detail = answer.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and not any(w in detail for w in PYDANTIC_WORDS), detail
    return detail


@pytest.mark.parametrize(
    ("kernel", "received"),
    [
        ([[1, 2, 3], [1]], "Received 2 row(s) of lengths 3, 1"),
        ([], "Received []"),
        ([[1, 2], [3, 4], [5, 6]], "Received 3 row(s) of lengths 2, 2, 2"),
        ([[1.0] * 8 for _ in range(8)], "Received 8 row(s)"),
        ([["a"]], "Received 'a' at row 0, column 0"),
        ([[True]], "Received 'True' at row 0, column 0"),
        ("edge", "Received: 'edge'"),
        ([1, 2], "Received: '[1, 2]'"),
    ],
)
def test_a_filter_that_is_not_a_square_of_numbers_is_a_422_naming_the_kernel(client, kernel, received):
    detail = one_line(client.post("/api/explain", json={"kernel": kernel}))
    assert detail.startswith("kernel must be a square list of lists of numbers, 1×1 to 7×7. ") and received in detail


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("NaN", "kernel values must be finite numbers. Received nan at row 0, column 1"),
        ("Infinity", "kernel values must be finite numbers. Received inf at row 0, column 1"),
        ("-Infinity", "kernel values must be finite numbers. Received -inf at row 0, column 1"),
        ("1e308", "kernel values must be numbers from -1e+06 to 1e+06. Received 1e+308 at row 0, column 1"),
        ("-1000001", "kernel values must be numbers from -1e+06 to 1e+06. Received -1e+06 at row 0, column 1"),
    ],
)
def test_filter_values_must_be_finite_and_within_a_million(client, value, expected):
    assert one_line(explain_raw(client, f'{{"kernel": [[1, {value}], [1, 1]]}}')) == expected


def test_a_filter_at_the_values_bound_gives_finite_outputs(client):
    answer = client.post("/api/explain", json={"kernel": [[1e6] * 7 for _ in range(7)], "padding": 0})
    assert answer.status_code == 200, answer.text
    output = answer.json()["output"]
    assert len(output) == 18 and all(v is not None and math.isfinite(v) and v >= 0 for row in output for v in row)
    assert answer.json()["filter"][6][6] == 1e6


@pytest.mark.parametrize(
    ("method", "url", "request_args", "expected"),
    [
        ("post", "/api/explain", {"json": {"padding": 1.5}},
         "padding must be an integer from 0 to 7 pixels, or valid or same. Received: '1.5'"),
        ("post", "/api/explain", {"json": {"padding": "nan"}},
         "padding must be an integer from 0 to 7 pixels, or valid or same. Received: 'nan'"),
        ("post", "/api/explain", {"json": {"padding": True}},
         "padding must be an integer from 0 to 7 pixels, or valid or same. Received: 'True'"),
        ("post", "/api/explain", {"json": {"size": "abc"}},
         "size must be an integer from 4 to 64 pixels. Received: 'abc'"),
        ("post", "/api/explain", {"content": '{"size": NaN}'},
         "size must be an integer from 4 to 64 pixels. Received: 'nan'"),
        ("post", "/api/explain", {"content": '{"row": 1e308}'},
         "row must be an integer from 0 to 63. Received: '1e+308'"),
        ("post", "/api/explain", {"json": {"stride": 1.5}},
         "stride must be an integer from 1 to 7 pixels. Received: '1.5'"),
        ("post", "/api/explain", {"json": {"kind": "convolution"}},
         "kind must be conv, max, avg or min. Received: 'convolution'"),
        ("post", "/api/explain", {"json": {"sample": "x" * 70}}, "sample must be one of "),
        ("post", "/api/explain", {"json": [1]}, "the request body must be a JSON object of the fields"),
        ("post", "/api/explain", {"content": "{bad"}, "the request body is not valid JSON (Expecting property name"),
        ("post", "/api/explain", {"content": ""}, "the request needs a body: a JSON object of the fields"),
        ("post", "/api/jobs", {"data": {"model": "lenet5"}}, "data is missing: data must be a built-in dataset or "),
        ("post", "/api/jobs", {"data": {"data": "mnist"}}, "model is missing: model must be one of the presets"),
        ("post", "/api/jobs", {"data": {"model": "lenet5", "data": "mnist", "epochs": "1.5"}},
         "epochs must be an integer from 1 to 1000. Received: '1.5'"),
        ("post", "/api/runs/shades/predict", {"data": {"image": "abc"}},
         "image must be an image file, sent as multipart form data (or send a sample's name). Received: 'abc'"),
        ("post", "/api/runs/shades/predict", {"data": {"sample": "camera", "top_k": "nan"}},
         "top_k must be an integer from 1 to 100 classes. Received: 'nan'"),
        ("get", "/api/runs/shades/gradcam", {},
         "image is missing: image must be the token that /api/runs/NAME/predict"),
        ("get", "/api/runs/shades/detections?image=a&min_score=nan", {},
         "min_score must be a number from 0 to 1. Received: 'nan'"),
        ("get", "/api/runs/shades/detections?image=a&min_score=inf", {},
         "min_score must be a number from 0 to 1. Received: 'inf'"),
        ("get", "/api/runs/shades/detections?image=a&min_score=1e308", {},
         "min_score must be a number from 0 to 1. Received: '1e308'"),
    ],
)  # fmt: skip
def test_every_validation_error_is_one_line_in_the_studios_words(client, method, url, request_args, expected):
    if "content" in request_args:
        request_args = {**request_args, "headers": {"content-type": "application/json"}}
    detail = one_line(getattr(client, method)(url, **request_args))
    assert detail.startswith(expected), detail


def test_two_fields_wrong_at_once_are_both_named_once(client):
    detail = one_line(client.post("/api/explain", json={"padding": 2.5, "size": 1000}))
    assert detail == ("size must be an integer from 4 to 64 pixels. Received: '1000'; "
                      "padding must be an integer from 0 to 7 pixels, or valid or same. Received: '2.5'")  # fmt: skip


def test_a_whole_number_written_as_a_float_is_a_padding(client):
    answer = client.post("/api/explain", json={"padding": 2.0, "size": 8})
    assert answer.status_code == 200 and answer.json()["pads"] == [2, 2, 2, 2], answer.text


def test_a_relative_data_folder_is_looked_up_in_the_data_roots(tmp_path, monkeypatch):
    started, popen = [], subprocess.Popen

    def sleeper(command, **kwargs):  # the training's process: a sleeper, which Stop (SIGINT) ends at once
        started.append(command)
        return popen([sys.executable, "-c", "import time; time.sleep(60)"], **kwargs)

    monkeypatch.setattr(studio_jobs.subprocess, "Popen", sleeper)
    runs, root = tmp_path / "srv", tmp_path / "datasets"
    (runs / "ds").mkdir(parents=True)
    (root / "digits").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)  # a folder of the server's working folder is not one of the roots'
    (tmp_path / "here").mkdir()
    app = create_app(runs, max_trainings=2, data_roots=[runs, root])
    with TestClient(app, base_url="http://127.0.0.1", headers=HEADERS) as client:
        missing = client.post("/api/jobs", data={"model": "lenet5", "data": "here"})
        detail = one_line(missing, 400)
        assert f"a folder inside {runs}, {root} (absolute, or relative to one of them). Received: 'here'" in detail
        outside = client.post("/api/jobs", data={"model": "lenet5", "data": "../here"})
        assert outside.status_code == 403 and "outside the studio's data roots" in outside.json()["detail"]
        for data in ("ds", "digits"):
            answer = client.post("/api/jobs", data={"model": "lenet5", "data": data})
            assert answer.status_code == 200, answer.text
            client.post(f"/api/jobs/{answer.json()['name']}/stop")
            app.state.jobs._jobs[answer.json()["name"]].process.wait(timeout=10)
        assert [c[c.index("--data") + 1] for c in started] == [str(runs / "ds"), str(root / "digits")]


def test_a_run_with_a_file_linking_outside_says_why_and_is_logged_once(tmp_path, caplog):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:secret\n")
    runs = tmp_path / "runs"
    for name in ("leaky", "dangling"):
        (runs / name).mkdir(parents=True)
        (runs / name / "config.yaml").write_text("epochs: 1\n")
    (runs / "leaky" / "curves.png").symlink_to(secret)
    (runs / "dangling" / "weights").mkdir()
    (runs / "dangling" / "weights" / "best.pt").symlink_to(tmp_path / "gone.pt")
    caplog.set_level(logging.WARNING, logger="convscope.studio.runs")
    with TestClient(create_app(runs), base_url="http://127.0.0.1", headers=HEADERS) as client:
        assert client.get("/api/runs").json() == []
        for url in ("/api/runs/leaky", "/api/runs/leaky/pictures/curves.png", "/api/runs/leaky"):
            detail = one_line(client.get(url), 404)
            assert detail == "run leaky is not served: its file curves.png links outside the run folder"
        page = client.get("/runs/leaky")  # its page says the same on a page
        assert page.status_code == 404 and "its file curves.png links outside the run folder</p>" in page.text
        detail = one_line(client.get("/api/runs/dangling/metrics"), 404)
        assert detail == "run dangling is not served: its file weights/best.pt is a link that leads nowhere"
        assert "root:" not in client.get("/api/runs/leaky/pictures/curves.png").text
    logged = sorted(r.getMessage() for r in caplog.records if r.name == "convscope.studio.runs")
    assert logged == [  # once each, although each was refused several times
        f"convscope studio: run dangling is not served: its file weights/best.pt is a link that leads nowhere "
        f"({runs / 'dangling'})",
        f"convscope studio: run leaky is not served: its file curves.png links outside the run folder "
        f"({runs / 'leaky'})",
    ]


@pytest.mark.parametrize("page", ["/runs/nope", "/runs/nope/try", "/runs/nope/network", "/runs/nope/mistakes"])
def test_a_page_for_no_run_is_a_page_saying_so_and_the_api_a_json_line(client, page):
    answer = client.get(page)
    assert answer.status_code == 404 and answer.headers["content-type"].startswith("text/html")
    assert "no run named &#39;nope&#39; in " in answer.text and '<a href="/">' in answer.text
    api = client.get("/api/runs/nope")
    assert api.status_code == 404 and api.json()["detail"].startswith("no run named 'nope' in ")


def test_a_run_stopped_before_its_first_epoch_says_so_instead_of_naming_a_missing_file(tmp_path, studio_runs):
    """Its config and spec only (stopped before the first checkpoint): a page asking for its network is told why."""
    runs = tmp_path / "runs"
    (runs / "early").mkdir(parents=True)
    for name in ("config.yaml", "spec.yaml"):
        (runs / "early" / name).write_bytes((studio_runs / "shades" / name).read_bytes())
    with TestClient(create_app(runs), base_url="http://127.0.0.1", headers=HEADERS) as early:
        answer = early.post("/api/runs/early/predict", data={"sample": "coffee"})
    assert answer.status_code == 400
    assert answer.json()["detail"] == (
        f"{runs / 'early'}: no epoch has finished yet, so it has no weights to use; train it on with "
        f"`convscope train --resume {runs / 'early'}`"
    )


def test_the_page_of_a_training_started_here_waits_for_its_run_folder(tmp_path):
    """A training started from the Train page makes its folder within seconds: its page is served meanwhile (its
    script waits for the folder), while a name no training here has is still a 404."""
    app = create_app(tmp_path / "runs")
    app.state.jobs.list = lambda: [{"name": "cifar-3conv-data-20261208-000407"}]
    with TestClient(app, base_url="http://127.0.0.1", headers=HEADERS) as waiting:
        assert waiting.get("/runs/cifar-3conv-data-20261208-000407").status_code == 200
        assert waiting.get("/runs/cifar-3conv-data-20261208-000408").status_code == 404
