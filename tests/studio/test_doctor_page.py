"""The studio's Doctor page (studio.doctor): a diagnosis started through the JSON API, followed to its end, its report
served; data outside the data roots refused; and the page in a real browser showing the findings as they come."""

import shutil
import time
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from convscope.studio.app import create_app

HEADER = {"x-convscope-studio": "1"}


def leaky(root: Path) -> Path:
    """train/ and test/ of two classes of distinct smooth pictures, one training image copied into test."""
    rng = np.random.default_rng(1)
    for split, count in (("train", 6), ("test", 3)):
        for name in ("ant", "bee"):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                small = rng.integers(20, 236, (6, 6, 3), dtype=np.uint8)
                Image.fromarray(small).resize((40, 40), Image.Resampling.BICUBIC).save(root / split / name / f"{i}.png")
    shutil.copy(root / "train/ant/2.png", root / "test/ant/copy.png")
    return root


def finished(client: TestClient, name: str) -> dict:
    deadline = time.monotonic() + 60
    while True:
        job = client.get(f"/api/doctor/{name}").json()
        if job["state"] != "running":
            return job
        assert time.monotonic() < deadline, "the diagnosis did not finish in 60 s"
        time.sleep(0.05)


def test_a_diagnosis_started_through_the_api_finishes_with_its_report(tmp_path):
    runs, data = tmp_path / "runs", leaky(tmp_path / "runs/insects")
    with TestClient(create_app(runs, data_roots=[runs]), base_url="http://127.0.0.1") as client:
        started = client.post("/api/doctor", data={"data": "insects"}, headers=HEADER)
        assert started.status_code == 200 and started.json()["state"] == "running"
        job = finished(client, started.json()["id"])
        assert job["state"] == "finished", job["message"]
        doc = job["diagnosis"]
        assert [f["kind"] for f in doc["findings"]] == ["leak"] and doc["findings"][0]["count"] == 1
        assert doc["source"] == str(data.resolve()) and doc["exit_code"] == 1
        assert [(s["name"], s["files"]) for s in doc["splits"]] == [("train", 12), ("test", 7)]
        folder = Path(job["folder"])
        assert folder.parent == runs.resolve() / ".doctor" and (folder / "doctor.json").is_file()
        page = client.get(job["report"])
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert doc["findings"][0]["title"] in page.text and page.text.count('<figure class="tile pair"') == 1
        listed = client.get("/api/doctor").json()
        assert [j["id"] for j in listed] == [job["id"]]
        assert client.get("/api/runs").json() == []  # the reports' folder is not a run


def test_the_doctor_refuses_what_it_may_not_read(tmp_path):
    runs = tmp_path / "runs"
    outside = leaky(tmp_path / "elsewhere")
    with TestClient(create_app(runs, data_roots=[runs]), base_url="http://127.0.0.1") as client:
        refused = client.post("/api/doctor", data={"data": str(outside)}, headers=HEADER)
        assert refused.status_code == 403 and "outside the studio's data roots" in refused.json()["detail"]
        missing = client.post("/api/doctor", data={"data": "no-such-folder"}, headers=HEADER)
        assert missing.status_code == 400
        assert missing.json()["detail"] == f"no such folder or file: {runs.resolve() / 'no-such-folder'}"
        deeper = client.post("/api/doctor", data={"data": str(runs / "a/b")}, headers=HEADER)
        assert deeper.json()["detail"] == f"no such folder or file: {runs.resolve() / 'a/b'}"
        gone = client.post("/api/doctor", data={"data": str(tmp_path / "gone/x")}, headers=HEADER)
        assert gone.status_code == 400 and gone.json()["detail"].startswith("data must be")  # not inside: no hint
        no_run = client.post("/api/doctor", data={"data": "cifar10", "run": "../x"}, headers=HEADER)
        assert no_run.status_code == 404
        assert client.post("/api/doctor", data={"data": "cifar10"}).status_code == 403  # not from the pages
        assert client.post("/api/doctor", data={}, headers=HEADER).status_code == 422
        assert client.get("/api/doctor/nothing").status_code == 404
        assert client.get("/doctor/nothing/report.html").status_code == 404
        assert client.get("/doctor/..%2F..%2Fetc/report.html").status_code == 404
        assert client.get("/api/doctor").json() == []


def test_the_doctor_page_shows_the_findings_of_a_folder(page, studio_runs, tmp_path):
    data = studio_runs.parent / "doctor-insects"
    if not data.exists():
        leaky(data)
    complaints, failed = [], []  # console errors (a 404 is one), and answers >= 400 (the refusals asked for below)
    page.on("console", lambda message: complaints.append(message.text) if message.type == "error" else None)
    page.on("response", lambda answer: failed.append((answer.url, answer.status)) if answer.status >= 400 else None)
    page.goto("/doctor")
    assert page.locator("header nav a.here").inner_text() == "Doctor"
    page.locator("#run option[value=shades]").wait_for(state="attached")
    page.fill("#data", "doctor-insects")
    page.click("#diagnose")
    leak = page.locator("#findings li[data-kind=leak]")
    leak.wait_for(timeout=60_000)
    assert (
        "1 image(s) are exact copies (the same bytes) of images in an earlier split (1 test image)" in leak.inner_text()
    )
    assert page.locator("#counts tr").count() == 4  # the head, two classes, the totals
    assert page.locator("#diagnoses tbody tr").first.locator("td").nth(1).inner_text() == "finished"
    frame = page.frame_locator("#report")
    frame.locator('figure.tile.pair[data-name="test/ant/copy.png"]').wait_for()
    loaded = frame.locator("figure.tile.pair img").evaluate_all("imgs => imgs.map(i => i.complete && i.naturalWidth)")
    assert loaded == [80, 80]  # 40×40 pictures, enlarged twice to be seen
    page.screenshot(path=tmp_path / "doctor.png", full_page=True)
    # the finding's link opens its own section of the report in the frame, which scrolls to it
    link = leak.locator("a")
    assert link.get_attribute("href").endswith("/report.html#finding-0") and link.get_attribute("target") == "report"
    section = frame.locator("#finding-0")
    before = section.bounding_box()["y"]
    link.click()
    deadline = time.monotonic() + 10
    while not page.frame(name="report").url.endswith("#finding-0") or section.bounding_box()["y"] == before:
        assert time.monotonic() < deadline, "the report did not go to the finding's section"
        page.wait_for_timeout(50)
    after, top = section.bounding_box()["y"], page.locator("#report").bounding_box()["y"]
    assert after < before and after >= top - 1
    # advice's `...` as <code>, the rest as text
    built = page.evaluate("() => { const d = document.createElement('p'); d.append(...prose('`convscope x` <b>y</b>'));"
                          " return d.innerHTML; }")  # fmt: skip
    assert built == "<code>convscope x</code> &lt;b&gt;y&lt;/b&gt;"
    assert not complaints and not failed, (complaints, failed)  # no favicon.ico 404 either
    # a diagnosis refused: its error, and nothing of the previous result left under it
    page.fill("#data", "/etc")
    page.click("#diagnose")
    page.wait_for_function("document.getElementById('doctor-error').textContent.includes('outside')")
    assert page.locator("#result").is_hidden()
    page.fill("#data", str(data.parent / "nope"))
    page.click("#diagnose")
    page.wait_for_function("document.getElementById('doctor-error').textContent.startsWith('no such folder or file')")
    assert page.locator("#doctor-error").inner_text() == f"no such folder or file: {data.parent.resolve() / 'nope'}"
    assert page.locator("#result").is_hidden() and page.frame(name="report").url == "about:blank"
    assert [status for _, status in failed] == [403, 400] and all(url.endswith("/api/doctor") for url, _ in failed)
    assert len(complaints) == 2 and all("status of 40" in text for text in complaints), complaints
