"""Every studio page end to end in a real browser: Debian's chromium driven by Playwright, against the studio served
by uvicorn on 127.0.0.1 (tests/studio/conftest.py). Screenshots of each page go to the test's temporary folder."""

from __future__ import annotations

import time

import numpy as np
import pytest

from convscope.data.images import sample_photo
from convscope.explain import NAMED_FILTERS, explain_conv
from convscope.studio.pictures import gray_sample


def test_the_runs_page_lists_each_run_with_its_status_and_score(page, tmp_path):
    page.goto("/")
    row = page.locator("tr[data-run=shades]")
    row.wait_for()
    cells = row.locator("td").all_inner_texts()
    assert cells[1] == "finished" and cells[2] == "classification" and cells[3] == "lenet5"
    assert cells[5] == "3 / 3" and cells[6].startswith("test accuracy ") and cells[6].endswith("%")
    assert page.locator("tr[data-run=boxes] td").nth(2).inner_text() == "detection"
    page.screenshot(path=tmp_path / "runs.png", full_page=True)
    row.locator("a", has_text="shades").click()
    page.wait_for_url("**/runs/shades")


def test_a_run_page_shows_its_curves_network_per_class_metrics_and_pictures(page, tmp_path):
    page.goto("/runs/shades")
    page.locator("#loss-chart polyline[data-series=train_loss]").wait_for()
    assert page.locator("#loss-chart polyline[data-series=val_loss]").count() == 1
    assert page.locator("#score-chart polyline[data-series=val_acc]").count() == 1
    # a marker per epoch, its value on hover; accuracies read as percentages
    assert page.locator("#score-chart circle[data-series=val_acc]").count() == 3
    hover = page.locator("#score-chart circle[data-series=val_acc] title").nth(2).text_content()
    assert hover.startswith("validation, epoch 3: ") and hover.endswith("%")
    assert all(t.endswith("%") for t in page.locator("#score-chart text.tick").all_text_contents()[:5])
    assert page.locator("#status").inner_text() == "finished"
    layers = page.locator("#layers tbody tr")
    assert layers.count() == 8 and "conv 5×5" in layers.nth(0).inner_text()
    page.locator("#per-class tbody tr").first.wait_for()
    assert page.locator("#per-class tbody tr").all_inner_texts()[0].startswith("dark")
    page.locator("#pictures img").first.wait_for()
    loaded = page.eval_on_selector_all("#pictures img", "imgs => imgs.map(i => i.complete && i.naturalWidth > 0)")
    assert loaded and all(loaded)
    page.screenshot(path=tmp_path / "run.png", full_page=True)


def test_a_run_of_one_epoch_draws_its_point(page):
    page.goto("/runs/shades")
    page.locator("#loss-chart circle").first.wait_for()
    drawn = page.evaluate(
        """() => {
        const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
        lineChart(svg, [{epoch: 1, train_loss: 0.7, val_loss: null}], [["train_loss", "#000", "training"]]);
        return {circles: svg.querySelectorAll("circle").length, lines: svg.querySelectorAll("polyline").length,
                axis: [...svg.querySelectorAll("text.tick")].map(t => t.textContent).pop(),
                title: svg.querySelector("circle title").textContent};
        }"""
    )
    assert drawn == {"circles": 1, "lines": 0, "axis": "epoch 1", "title": "training, epoch 1: 0.7"}


def test_try_it_predicts_an_uploaded_photo_and_shows_gradcam_and_feature_maps(page, tmp_path):
    page.goto("/runs/shades/try")
    page.set_input_files("#upload", str(sample_photo("coffee")))
    page.click("#upload-form button[type=submit]")
    page.locator("#top tbody tr").first.wait_for()
    rows = page.locator("#top tbody tr").all_inner_texts()
    assert len(rows) == 2 and {row.split("\t")[0] for row in rows} == {"dark", "light"}
    shares = [float(row.split("\t")[1].rstrip("%")) for row in rows]
    assert sum(shares) == pytest.approx(100, abs=0.2) and shares[0] >= shares[1]
    conversion = page.locator("#conversion").inner_text()
    assert conversion == "as the network sees it: RGB 600×400 → gray 28×28"  # the upload said once
    assert "Where it looked (HiResCAM)" in page.content()  # the method the studio uses, by its name
    page.wait_for_function("document.getElementById('gradcam').naturalWidth > 0")
    first = page.evaluate("() => document.getElementById('gradcam').src")
    other = [c for c in ("dark", "light") if c != page.locator("#gradcam-class").input_value()][0]
    page.select_option("#gradcam-class", other)
    changed = "src => (g => g.src !== src && g.complete && g.naturalWidth > 0)(document.getElementById('gradcam'))"
    page.wait_for_function(changed, arg=first)
    assert f"class_name={other}" in page.locator("#gradcam").get_attribute("src")
    page.locator("#maps figure").first.wait_for()
    assert page.locator("#maps figure").count() == 6 and "28×28×6" in page.locator("#layer-shape").inner_text()
    page.select_option("#layer", "conv2")
    page.wait_for_function("document.querySelectorAll('#maps figure').length === 16")
    assert "10×10×16" in page.locator("#layer-shape").inner_text()
    page.screenshot(path=tmp_path / "try.png", full_page=True)
    page.locator("#maps figure").nth(3).click()
    assert "map 3 of 10×10×16" in page.locator("#enlarged p").inner_text()
    page.screenshot(path=tmp_path / "try-enlarged.png")


def test_a_detector_draws_its_boxes_and_the_score_slider_filters_them(page, tmp_path):
    page.goto("/runs/boxes/try")
    page.select_option("#sample", "astronaut")
    page.click("#use-sample")
    page.locator("#box-count").wait_for()
    page.wait_for_function("document.getElementById('box-count').textContent.includes('boxes')")
    total = int(page.locator("#box-count").inner_text().split(" of ")[1].split()[0])
    counts = []
    for value in ("0.05", "0.5", "1"):
        page.eval_on_selector("#min-score", "(s, v) => { s.value = v; s.dispatchEvent(new Event('input')); }", value)
        counts.append(int(page.locator("#box-count").inner_text().split(" of ")[0]))
        assert page.locator("#min-score-value").inner_text() == f"{float(value):.2f}"
    assert counts[0] == total and counts == sorted(counts, reverse=True) and counts[-1] <= total
    page.screenshot(path=tmp_path / "detector.png", full_page=True)


def test_explain_follows_one_output_value_as_the_reference_computes_it(page, tmp_path):
    page.goto("/explain")
    page.locator("#value").wait_for()
    page.wait_for_function("document.getElementById('output-size').textContent.includes('×')")
    page.select_option("#sample", "camera")
    page.select_option("#kind", "conv")
    page.select_option("#padding", "valid")
    page.eval_on_selector("#stride", "s => { s.value = '2'; s.dispatchEvent(new Event('input')); "
                                     "s.dispatchEvent(new Event('change')); }")  # fmt: skip
    page.wait_for_function("document.getElementById('output-size').textContent.trim() === '11×11'")
    assert page.locator("#stride-value").inner_text().strip() == "2"
    size = int(page.locator("#size").input_value())
    x = gray_sample("camera", size)
    reference = explain_conv(x, np.asarray(NAMED_FILTERS["edge-x"], float), 2, "valid", (0, 0)).output
    # Hover the output map's cell (row 3, column 4): the walkthrough of that position comes from the server.
    box = page.locator("#output").bounding_box()
    rows, columns = (int(page.locator("#output").get_attribute(f"data-{k}")) for k in ("rows", "columns"))
    assert (rows, columns) == (11, 11)
    page.mouse.move(box["x"] + (4.5 / columns) * box["width"], box["y"] + (3.5 / rows) * box["height"])
    page.wait_for_function(
        "(o => o.dataset.row === '3' && o.dataset.column === '4')(document.getElementById('output'))"
    )
    expected = f"{reference[3, 4]:.4g}"
    page.wait_for_function(f"document.getElementById('value').textContent.trim() === {expected!r}")
    assert "sum = " in page.locator("#walkthrough").inner_text()
    assert "⌊(24 − 3)/2⌋ + 1 = 11" in page.locator("#formula").inner_text()
    page.screenshot(path=tmp_path / "explain.png", full_page=True)


def test_a_training_started_from_the_page_can_be_watched_and_stopped_resumably(
    page, studio_data, studio_runs, tmp_path
):
    page.goto("/train")
    page.select_option("#model", "lenet5")
    page.fill("#data", str(studio_data))
    page.fill("#epochs", "400")
    page.click("#start")
    row = page.locator("#jobs tbody tr").first
    row.wait_for()
    name = row.get_attribute("data-job")
    assert row.locator(".status").inner_text() == "running"
    deadline = time.monotonic() + 120
    while not (studio_runs / name / "checkpoint.safetensors").exists():  # an epoch saved: there is something to resume
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.2)
    page.goto(f"/runs/{name}")
    page.locator("#loss-chart polyline[data-series=train_loss]").wait_for()  # the live curve
    assert page.locator("#status").inner_text() == "running"
    page.goto("/train")
    page.locator(f"#jobs tr[data-job='{name}'] button", has_text="Stop").click()
    page.wait_for_function(
        "name => document.querySelector(`#jobs tr[data-job='${name}'] .status`).textContent === 'stopped, resumable'",
        arg=name,
        timeout=60_000,
    )
    page.screenshot(path=tmp_path / "train.png", full_page=True)
    page.goto("/")
    page.locator(f"tr[data-run='{name}']").wait_for()
    assert page.locator(f"tr[data-run='{name}'] td").nth(1).inner_text() == "stopped, resumable"
    assert (studio_runs / name / "checkpoint.safetensors").exists() and not (
        studio_runs / name / "results.json"
    ).exists()
