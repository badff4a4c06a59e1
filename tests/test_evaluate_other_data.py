"""`convscope evaluate RUN --data OTHER` scores another dataset without touching the run's own test results: its
confusion matrix goes to RUN/confusion-NAME.png, the CLI says so, and confusion.png and evaluation.json stay as
training wrote them; so does `Run.evaluate` on another dataset or on arrays."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import make_folder

import convscope
from convscope.classify.evaluate import confusion_path
from convscope.cli import main
from convscope.files import written_by_convscope
from convscope.tasks.train import train

OWN = ("confusion.png", "evaluation.json", "results.json")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = make_folder(tmp_path_factory.mktemp("images"), per_class=20)
    out = tmp_path_factory.mktemp("runs") / "run"
    return train(model="lenet5", data=str(folder), epochs=1, batch_size=16, threads=1, out=str(out), report=False)


def own_files(run) -> dict[str, bytes]:
    return {name: (run.path / name).read_bytes() for name in OWN}


def test_other_data_gets_its_own_picture_and_leaves_the_runs_results(run, tmp_path, capsys):
    other = make_folder(tmp_path / "other images", per_class=10)
    before = own_files(run)
    assert main(["evaluate", str(run.path), "--data", str(other)]) == 0
    out = capsys.readouterr().out.replace("\n", "")
    picture = run.path / "confusion-other_images.png"
    assert confusion_path(run, str(other)) == picture
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert written_by_convscope(picture)  # the folder stays a run's
    assert f"picture: {picture} (on {other}; the run's own test results are kept)" in out
    assert own_files(run) == before
    assert "(2 images)" in out  # other's test split (a tenth of 20), not the run's

    assert main(["evaluate", str(run.path)]) == 0  # the plain evaluation names the run's own picture
    assert f"picture: {run.path / 'confusion.png'}" in capsys.readouterr().out.replace("\n", "")
    assert own_files(run) == before


def test_run_evaluate_on_other_data_or_arrays_keeps_the_runs_results(run, tmp_path):
    before = own_files(run)
    loaded = convscope.load_run(run.path)
    other = make_folder(tmp_path / "more", per_class=10)
    assert int(loaded.evaluate(str(other)).confusion.sum()) == 2
    x = np.full((6, 28, 28), 200, np.uint8)
    assert int(loaded.evaluate(x, np.ones(6, np.int64)).confusion.sum()) == 6
    assert (run.path / "confusion-more.png").is_file() and (run.path / "confusion-arrays.png").is_file()
    assert own_files(run) == before
