"""Compare runs (studio.compare, studio.comparing): the pure table-making, the JSON API on the session's runs plus a
second classifier ('shades-fast', trained here with another learning rate), and the page in a real browser."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from convscope.data.images import sample_photo
from convscope.studio import comparing
from convscope.studio.app import create_app

SHOTS = Path("/tmp/shots")


@pytest.fixture(scope="module")
def fast_run(studio_runs, studio_data) -> str:
    """'shades-fast': lenet5 on the shades data for 2 epochs at lr 0.01 (shades: 3 epochs, the automatic rate)."""
    from convscope.tasks.train import train

    if not (studio_runs / "shades-fast" / "results.json").is_file():
        train(
            model="lenet5", data=str(studio_data), epochs=2, batch_size=16, lr=0.01, threads=1,
            out=str(studio_runs / "shades-fast"),
        )  # fmt: skip
    return "shades-fast"


@pytest.fixture(scope="module")
def client(studio_runs, fast_run):
    app = create_app(studio_runs)
    with TestClient(app, base_url="http://127.0.0.1", headers={"x-convscope-studio": "1"}) as test_client:
        yield test_client


# -- the pure part ----------------------------------------------------------------------------------------------------
def detail(name, task="classification", lr=None, epochs=2, classes=("cat", "dog")):
    rows = [{"epoch": float(e), "train_loss": 1.0 / e, "val_loss": 2.0 / e, "train_acc": 0.5, "val_acc": 0.25 * e,
             "val_map50": 0.1 * e} for e in range(1, epochs + 1)]  # fmt: skip
    return {
        "name": name, "task": task, "model": "lenet5", "data": "pets", "classes": len(classes),
        "class_names": list(classes), "input": "28×28×1", "params": 61026, "epochs": epochs, "planned_epochs": epochs,
        "config": {"batch_size": 16, "lr": lr, "optimizer": "adamw"}, "status": "finished", "score": 0.5,
        "score_name": "test accuracy", "results": {"train_seconds": 1.23}, "metrics": rows,
    }  # fmt: skip


def test_run_names_are_two_to_eight_each_once():
    assert comparing.run_names(" a, b ,,c") == ["a", "b", "c"]
    for text, words in [("a", "Received: 1"), ("", "Received: 0"), (",".join("abcdefghi"), "Received: 9"),
                        ("a,b,a", "twice: a")]:  # fmt: skip
        with pytest.raises(comparing.CompareRefused, match=words):
            comparing.run_names(text)


def test_curves_merge_by_epoch_with_the_run_in_each_key():
    [group] = comparing.curves([detail("a", epochs=3), detail("b", epochs=1)])
    assert group["task"] == "classification" and group["runs"] == ["a", "b"] and len(group["rows"]) == 3
    assert group["rows"][0] == {"epoch": 1, "a:train_loss": 1.0, "a:val_loss": 2.0, "a:train_acc": 0.5,
                                "a:val_acc": 0.25, "b:train_loss": 1.0, "b:val_loss": 2.0, "b:train_acc": 0.5,
                                "b:val_acc": 0.25}  # fmt: skip
    assert group["rows"][2] == {"epoch": 3, "a:train_loss": 1 / 3, "a:val_loss": 2 / 3, "a:train_acc": 0.5,
                                "a:val_acc": 0.75}  # fmt: skip


def test_runs_of_two_tasks_get_a_chart_each_and_a_note():
    groups = comparing.curves([detail("a"), detail("d", task="detection"), detail("b")])
    assert [(g["task"], g["runs"], g["score"]) for g in groups] == [
        ("classification", ["a", "b"], ["train_acc", "val_acc"]),
        ("detection", ["d"], ["val_map50"]),
    ]
    assert "d:val_map50" in groups[1]["rows"][1] and "d:val_acc" not in groups[1]["rows"][1]
    [note] = comparing.notes([detail("a"), detail("d", task="detection")])
    assert "a: classification; d: detection" in note
    assert comparing.notes([detail("a"), detail("b")]) == []


def test_settings_mark_the_rows_that_differ():
    rows = {row["setting"]: row for row in comparing.settings([detail("a"), detail("b", lr=0.01)])}
    assert rows["learning rate"]["values"] == ["auto", 0.01] and rows["learning rate"]["differs"]
    assert rows["batch size"]["values"] == [16, 16] and not rows["batch size"]["differs"]
    assert (
        rows["test score"]["values"] == ["test accuracy 50.0%"] * 2 and rows["training seconds"]["values"] == [1.2] * 2
    )
    assert sum(row["differs"] for row in rows.values()) == 1


def test_per_class_numbers_are_aligned_by_class_name_with_notes():
    a = {"detector": False, "per_class": [{"class": "cat", "f1": 0.5}, {"class": "dog", "f1": 0.75}]}
    b = {"detector": False, "per_class": [{"class": "dog", "f1": 1.0}, {"class": "fox", "f1": 0.0}]}
    none = {"detector": False, "per_class": [], "note": "not tested yet"}
    table = comparing.per_class(["a", "b", "c"], [a, b, none])
    assert table["metrics"] == ["f1"]
    assert [(r["class"], r["values"]) for r in table["rows"]] == [
        ("cat", {"a": {"f1": 0.5}, "b": None, "c": None}),
        ("dog", {"a": {"f1": 0.75}, "b": {"f1": 1.0}, "c": None}),
        ("fox", {"a": None, "b": {"f1": 0.0}, "c": None}),
    ]
    assert table["notes"] == ["c: not tested yet", "a has no class fox", "b has no class cat"]


# -- the API ----------------------------------------------------------------------------------------------------------
def test_the_api_compares_two_classifiers(client):
    answer = client.get("/api/compare?runs=shades,shades-fast").json()
    assert [run["name"] for run in answer["runs"]] == ["shades", "shades-fast"] and answer["notes"] == []
    [group] = answer["curves"]
    assert [row["epoch"] for row in group["rows"]] == [1, 2, 3]
    assert {"shades:val_acc", "shades-fast:val_acc"} <= set(group["rows"][1]) and "shades-fast:val_acc" not in group[
        "rows"
    ][2]
    settings = {row["setting"]: row for row in answer["settings"]}
    assert settings["learning rate"]["values"] == ["auto (0.002)", 0.01] and settings["learning rate"]["differs"]
    assert settings["epochs done / planned"]["values"] == ["3 / 3", "2 / 2"]
    # what 'auto' became: the precision training chose (fp32 or bf16, per machine), the augmentation from the data
    assert all(v in ("auto (fp32)", "auto (bf16)") for v in settings["precision"]["values"])
    assert settings["augmentation"]["values"] == ["auto (flip,translate=2)"] * 2
    assert settings["images per class"]["values"] == ["all", "all"] and settings["parameters"]["values"][0] == "61,026"
    assert not settings["model"]["differs"] and not settings["classes"]["differs"]
    table = answer["per_class"]
    assert [row["class"] for row in table["rows"]] == ["dark", "light"] and table["notes"] == []
    assert table["metrics"] == ["precision", "recall", "f1", "support"]
    for row in table["rows"]:
        assert set(row["values"]) == {"shades", "shades-fast"}
        assert all(0 <= row["values"][run]["f1"] <= 1 for run in row["values"])
        assert row["values"]["shades"]["support"] == row["values"]["shades-fast"]["support"] > 0  # one test split


def test_a_classifier_and_a_detector_are_compared_where_they_can_be(client):
    answer = client.get("/api/compare?runs=shades,boxes").json()
    assert [(g["task"], g["runs"]) for g in answer["curves"]] == [
        ("classification", ["shades"]),
        ("detection", ["boxes"]),
    ]
    assert len(answer["notes"]) == 1 and "different tasks" in answer["notes"][0]
    table = answer["per_class"]
    assert table["metrics"] == ["precision", "recall", "f1", "support", "ap50"]
    assert len(table["rows"]) == 2 + 10 and any("not the same number" in n for n in table["notes"])


@pytest.mark.parametrize(
    ("runs", "status", "words"),
    [("shades", 400, "2 to 8 runs"), ("shades,shades", 400, "twice: shades"), (",".join(["shades"] * 9), 400, "2 to 8"),
     ("shades,nope", 404, "no run named 'nope'"), ("shades,..", 404, "no run named")],
)  # fmt: skip
def test_the_api_refuses_in_one_line(client, runs, status, words):
    answer = client.get("/api/compare", params={"runs": runs})
    assert answer.status_code == status and words in answer.json()["detail"] and "\n" not in answer.json()["detail"]


def test_one_upload_serves_every_run(client):
    photo = sample_photo("coffee").read_bytes()
    upload = client.post("/api/runs/boxes/predict", files={"image": ("x.png", photo)}).json()  # a detector's upload
    assert upload["upload"] == "RGB 600×400"
    answer = client.get("/api/compare/top", params={"runs": "shades,shades-fast,boxes", "image": upload["image"]})
    runs = {run["name"]: run for run in answer.json()["runs"]}
    assert list(runs) == ["shades", "shades-fast", "boxes"]
    for name in ("shades", "shades-fast"):
        top = runs[name]["top"]
        assert [t["class"] for t in top] in (["dark", "light"], ["light", "dark"])
        assert abs(sum(t["probability"] for t in top) - 1) < 1e-5
        cam = client.get(f"/api/runs/{name}/gradcam", params={"image": upload["image"]})  # the same token
        assert cam.status_code == 200 and cam.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert runs["boxes"]["detector"] and runs["boxes"]["top"] == []
    found = client.get("/api/runs/boxes/detections", params={"image": upload["image"]})
    assert found.status_code == 200 and (found.json()["width"], found.json()["height"]) == (600, 400)
    one = client.get("/api/compare/top", params={"runs": "shades,shades-fast", "image": upload["image"], "top_k": 1})
    assert [len(run["top"]) for run in one.json()["runs"]] == [1, 1]
    gone = client.get("/api/compare/top", params={"runs": "shades,shades-fast", "image": "nope"})
    assert gone.status_code == 404 and "no such uploaded image" in gone.json()["detail"]
    assert client.get("/api/compare/top", params={"runs": "shades", "image": upload["image"]}).status_code == 400


# -- the page ---------------------------------------------------------------------------------------------------------
def test_the_compare_page_shows_two_runs_side_by_side(page, fast_run):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.goto("/compare?runs=shades")  # as the run page links to it: one run ticked, one more wanted
    page.locator("#picker tr[data-run=shades-fast] input").wait_for()
    assert page.locator("#picker tr[data-run=shades] input").is_checked()
    assert "one more run" in page.locator("#pick-note").inner_text() and page.locator("#compared").is_hidden()
    page.locator("#picker tr[data-run=shades-fast] input").check()
    page.wait_for_url("**/compare?runs=shades,shades-fast")
    page.locator("#settings tbody tr").first.wait_for()
    for run, points in (("shades", 3), ("shades-fast", 2)):
        for key in ("val_loss", "train_loss"):
            assert page.locator(f"svg[data-chart=loss] circle[data-series='{run}:{key}']").count() == points
        assert page.locator(f"svg[data-chart=score] polyline[data-series='{run}:val_acc']").count() == 1
    dashed = page.locator("svg[data-chart=loss] polyline[data-series='shades:train_loss']").get_attribute(
        "stroke-dasharray"
    )
    assert dashed and page.locator("#legend [data-run]").all_inner_texts() == ["shades", "shades-fast"]
    learning_rate = page.locator("#settings tr.differs[data-setting='learning rate'] td").all_inner_texts()
    assert learning_rate == ["auto (0.002)", "0.01"]
    assert page.locator("#settings tr[data-setting=model]:not(.differs) td").all_inner_texts() == ["lenet5", "lenet5"]
    assert page.locator("#per-class tbody tr").count() == 2 and page.locator("#metric").input_value() == "f1"
    page.click("#use-sample")
    page.wait_for_function(
        "[...document.querySelectorAll('#predictions img.cam')]"
        ".filter(i => i.complete && i.naturalWidth > 0).length === 2"
    )
    page.wait_for_function("(i => i.complete && i.naturalWidth > 0)(document.getElementById('image'))")
    assert page.locator("#predictions .run-card").count() == 2
    assert page.locator("#predictions [data-run=shades] table.top tr").count() == 2
    page.select_option("#cam-class", "light")
    assert "class_name=light" in page.locator("#predictions [data-run=shades-fast] img.cam").get_attribute("src")
    page.screenshot(path=SHOTS / "compare-classifiers.png", full_page=True)

    page.reload()  # the address keeps the choice
    page.locator("#settings tbody tr").first.wait_for()
    assert page.locator("#picker input:checked").count() == 2
    page.set_input_files("#upload", str(sample_photo("coffee")))  # a file of the user's, uploaded once
    page.click("#image-form button[type=submit]")
    page.wait_for_function("document.getElementById('image-note').textContent.startsWith('RGB 600×400')")
    page.locator("#predictions [data-run=shades-fast] img.cam").wait_for()


def test_the_compare_page_says_what_a_detector_and_a_classifier_cannot_share(page):
    page.goto("/compare?runs=shades,boxes")
    page.locator("#notes li").wait_for()
    assert "different tasks" in page.locator("#notes").inner_text()
    assert page.locator("svg[data-chart=score][data-task=detection] circle[data-series='boxes:val_map50']").count() == 2
    assert page.locator("#per-class tbody tr").count() == 12 and page.locator("#metric").input_value() == "own"
    rows = [page.locator(f"#per-class tbody tr:nth-child({i}) td").all_inner_texts() for i in range(1, 13)]
    assert [row[0] for row in rows[:2]] == ["dark", "light"] and all(row[2] == "no such class" for row in rows[:2])
    assert all(row[1] == "no such class" for row in rows[2:])
    assert 0 <= float(rows[0][1]) <= 1 and any(row[2].replace(".", "").isdigit() for row in rows[2:])  # F1, AP@0.5
    page.click("#use-sample")
    page.locator("#predictions [data-run=boxes] canvas[data-boxes]").wait_for()
    page.locator("#predictions [data-run=shades] img.cam").wait_for()
    page.screenshot(path=SHOTS / "compare-mixed.png", full_page=True)
    page.goto("/compare?runs=shades,nope")
    page.wait_for_function("document.getElementById('compare-error').textContent.includes('nope')")
