"""The run page's live parts in a real browser: the film strip with its epoch slider, the progress bar of a run that
trains (a copy of a run whose lock this test holds, with a progress.json written here), the learning-rate curve and
the curves' smoothing. Screenshots go to /tmp/shots/live-*.png."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

import pytest

from convscope.run import FILMSTRIP, PROGRESS

SHOTS = Path("/tmp/shots")


def test_the_film_strip_plays_back_the_epochs_with_its_slider(page):
    page.goto("/runs/shades")
    page.locator("#filmstrip-filters img").first.wait_for()
    page.wait_for_function("document.querySelector('#filmstrip').dataset.epoch === '3'")  # the last epoch first
    slider = page.locator("#filmstrip-epoch")
    assert slider.get_attribute("max") == "3"  # epochs 0 (untrained) to 3
    assert page.locator("#filmstrip-shown").inner_text() == "epoch 3"
    assert page.locator("#filmstrip-filters img").count() == 6  # lenet5's conv1: 6 filters
    layers = page.locator("#filmstrip-layers .live-layer")
    assert layers.count() == 2
    assert layers.nth(0).locator("h3").inner_text() == "conv1 28×28×6: its first 6 maps"
    assert layers.nth(1).locator("img").count() == 16
    last = page.locator("#filmstrip-layers img").first.get_attribute("src")
    page.evaluate("s => { s.value = 0; s.dispatchEvent(new Event('input')); }", slider.element_handle())
    page.wait_for_function("document.querySelector('#filmstrip').dataset.epoch === '0'")
    assert page.locator("#filmstrip-shown").inner_text() == "epoch 0 (untrained)"
    assert page.locator("#filmstrip-layers img").first.get_attribute("src") != last  # other maps
    assert page.locator("#filmstrip-probe").get_attribute("src").startswith("data:image/png;base64,")
    assert page.locator("#live-progress").is_hidden()  # a finished run shows no progress bar
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#filmstrip").screenshot(path=SHOTS / "live-filmstrip.png")


def test_the_learning_rate_curve_and_smoothing(page):
    page.goto("/runs/shades")
    page.locator("#lr-chart circle[data-series=lr]").first.wait_for()
    assert page.locator("#lr-chart circle[data-series=lr]").count() == 3
    assert page.locator("#lr-chart polyline[data-series=lr]").count() == 1
    assert page.locator("#loss-chart polyline[data-smoothed]").count() == 0
    page.evaluate("s => { s.value = 0.6; s.dispatchEvent(new Event('input')); }",
                  page.locator("#smoothing").element_handle())  # fmt: skip
    assert page.locator("#smoothing-value").inner_text() == "0.60"
    assert page.locator("#loss-chart polyline[data-series=train_loss]").get_attribute("data-smoothed") == "0.6"
    assert page.locator("#loss-chart polyline[data-series='train_loss:raw']").count() == 1
    assert page.locator("#lr-chart polyline[data-smoothed]").count() == 0  # the schedule itself is not smoothed
    # the smoothed line starts at the first value (debiased) and ends between the raw curve's values
    drawn = page.evaluate("""() => {
        const line = document.querySelector('#loss-chart polyline[data-series=train_loss]').getAttribute('points');
        const raw = document.querySelector("#loss-chart polyline[data-series='train_loss:raw']").getAttribute('points');
        return [line.split(' '), raw.split(' ')];
    }""")
    assert drawn[0][0] == drawn[1][0] and drawn[0][-1] != drawn[1][-1]


@pytest.fixture
def training_copy(studio_runs):
    """A copy of 'shades' that reads as training now: its lock names this (living) process, as a training's does."""
    copy = studio_runs / "shades-live"
    shutil.copytree(studio_runs / "shades", copy)
    (copy / "results.json").unlink()
    (copy / PROGRESS).unlink()  # the finished training's last one: this "training" has not written one yet
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    (copy / ".lock").write_text(f"pid {os.getpid()} on {socket.gethostname()} since {started}: convscope train")
    body = {"epoch": 3, "epochs": 10, "batch": 30, "batches": 120, "images_per_s": 1234.5, "eta_epoch_s": 75.0,
            "eta_run_s": 655.0, "train_loss": 0.4321, "train_acc": 0.875, "phase": 1, "stage": "training",
            "updated": time.time()}  # fmt: skip
    yield copy, body
    shutil.rmtree(copy)


def test_a_training_run_shows_its_progress_bar(page, training_copy, studio_url, studio_runs):
    training_copy, body = training_copy
    page.goto("/runs/shades-live")  # before its first progress.json: the page keeps asking
    page.locator("#layers tbody tr").first.wait_for()
    assert page.locator("#live-progress").is_hidden()
    page.wait_for_function("document.querySelector('#per-class-note').textContent.startsWith('not tested yet')")
    (training_copy / PROGRESS).write_text(json.dumps(body))
    page.locator("#live-progress").wait_for()
    assert page.locator("#status").inner_text() == "running"
    assert page.locator("#live-epoch").inner_text() == "epoch 3 of 10 · batch 30 of 120"
    numbers = page.locator("#live-numbers").inner_text()
    assert numbers == (
        "1235 images/s · 1 min 15 s left in this epoch · 10 min 55 s left in all · running loss 0.4321 · accuracy 87.5%"
    )
    assert page.locator("#live-bar").evaluate("b => b.style.width") == "25%"
    # the next poll shows the next progress.json
    body = json.loads((training_copy / PROGRESS).read_text()) | {"batch": 90}
    (training_copy / PROGRESS).write_text(json.dumps(body))
    page.wait_for_function("document.querySelector('#live-bar').style.width === '75%'")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=SHOTS / "live-run-page.png", full_page=True)
    # ended: the lock released, the answer is {} and the bar goes; the test's per-class numbers appear
    (training_copy / "results.json").write_bytes((studio_runs / "shades" / "results.json").read_bytes())
    (training_copy / ".lock").write_text("")
    page.wait_for_selector("#live-progress", state="hidden")
    page.locator("#per-class tbody tr").first.wait_for()
    assert page.locator("#per-class tbody tr").all_inner_texts()[0].startswith("dark")


def test_the_api_answers_and_refuses(page, studio_runs):
    answer = page.request.get("/api/runs/shades/progress")
    assert answer.ok and answer.json() == {}  # finished: no progress
    strip = page.request.get("/api/runs/boxes/filmstrip").json()  # the detector: its own conv layers
    assert strip["epochs"] == [0, 1, 2]
    assert [(lay["name"], lay["shape"]) for lay in strip["layers"]] == [("conv1", "32×32×8"), ("conv2", "16×16×16")]
    assert strip["filters"] == {"layer": "conv1", "count": 8, "shape": "3×3×3"}
    shot = page.request.get("/api/runs/boxes/filmstrip/2").json()
    assert len(shot["filters"]) == 8 and [len(lay["maps"]) for lay in shot["layers"]] == [8, 16]
    assert page.request.get("/api/runs/boxes/filmstrip/7").status == 404
    assert page.request.get("/api/runs/boxes/filmstrip/-1").status == 404
    assert page.request.get("/api/runs/..%2Fshades/filmstrip").status == 404
    before = sorted(p.name for p in (studio_runs / "shades" / FILMSTRIP).iterdir())
    assert before == ["epoch-0000.npz", "epoch-0001.npz", "epoch-0002.npz", "epoch-0003.npz", "probe.png"]
