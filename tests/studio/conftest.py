"""The studio under test: a runs folder with a trained classifier and a trained detector, the app served by a real
uvicorn server on 127.0.0.1, and Debian's chromium driven by Playwright (installed with apt when missing and this is
root; otherwise the browser tests skip, saying why)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import make_folder, served

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def studio_runs(tmp_path_factory) -> Path:
    """runs/ with 'shades' (a classifier of dark and light images, 3 epochs) and 'boxes' (a tiny detector)."""
    from convscope.data.detection.scenes import make_scenes
    from convscope.spec import NetSpec
    from convscope.tasks.train import train

    root = tmp_path_factory.mktemp("studio")
    folder = make_folder(root / "shades-data", per_class=40, size=20)
    runs = root / "runs"
    train(model="lenet5", data=str(folder), epochs=3, batch_size=16, threads=1, out=str(runs / "shades"))
    scenes = make_scenes(root / "scenes", 24, seed=1, size=64, min_side=10, max_side=28)
    spec = NetSpec.from_dict({"name": "tiny-det", "input": "64x64x3", "layers": [
        {"conv": {"filters": 8, "size": 3, "stride": 2, "padding": "same"}},
        {"conv": {"filters": 16, "size": 3, "stride": 2, "padding": "same"}},
        {"detect": {"classes": 10, "channels": 8}}]})  # fmt: skip
    (root / "det.yaml").write_text(spec.to_yaml())
    train(model=str(root / "det.yaml"), data=str(scenes), epochs=2, batch_size=8, threads=1, out=str(runs / "boxes"))
    return runs


@pytest.fixture(scope="session")
def studio_data(studio_runs) -> Path:
    return studio_runs.parent / "shades-data"


@pytest.fixture(scope="session")
def studio_url(studio_runs):
    """The studio on a free port of 127.0.0.1, served by uvicorn in a thread for the whole session."""
    from convscope.studio.app import create_app

    app = create_app(studio_runs, data_roots=[studio_runs.parent])  # the Train page may train on shades-data
    with served(app) as url:
        yield url


def _chromium() -> str | None:
    """Debian's chromium, installed with apt when missing and this process may (root, apt-get present)."""
    if os.path.exists(CHROMIUM):
        return CHROMIUM
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, check=False, timeout=900)
    return CHROMIUM if os.path.exists(CHROMIUM) else None


@pytest.fixture(scope="session")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (.[dev])")
    executable = _chromium()
    if executable is None:
        pytest.skip(f"no browser: {CHROMIUM} is missing and could not be installed with apt (needs root and apt-get)")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser, studio_url):
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, base_url=studio_url)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda err: errors.append(str(err)))
    yield opened
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
