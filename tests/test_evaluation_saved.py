"""The test evaluation training saves (evaluation.json) is what `convscope evaluate`, the report, the studio and
Run.evaluate show: read back while the best weights are the ones it was made with, scored again (and saved) when
they are not, or when an older convscope wrote the file."""

import hashlib
import json
import shutil

import pytest
from helpers import make_folder

import convscope
from convscope.classify import evaluate as evaluation
from convscope.classify.report import write_report
from convscope.cli import main
from convscope.run import load_run
from convscope.studio import pictures
from convscope.tasks.train import train


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = make_folder(tmp_path_factory.mktemp("images"), per_class=20)
    out = tmp_path_factory.mktemp("runs") / "run"
    return train(model="lenet5", data=str(folder), epochs=1, batch_size=16, threads=1, out=str(out), report=False)


@pytest.fixture
def copy(run, tmp_path):
    """A copy of the run folder that a test may change."""
    return load_run(shutil.copytree(run.path, tmp_path / "run"))


@pytest.fixture
def no_scoring(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the test split was scored again")

    monkeypatch.setattr(evaluation, "evaluate", refuse)


def saved(run) -> dict:
    return json.loads((run.path / "evaluation.json").read_text())


def test_training_saves_the_evaluation_stamped_with_the_best_weights(run):
    body = saved(run)
    assert body["weights_sha256"] == hashlib.sha256((run.weights / "best.safetensors").read_bytes()).hexdigest()
    assert body["images"] == sum(map(sum, body["confusion"])) == run.results()["test_images"]
    assert body["accuracy"] == pytest.approx(run.results()["test_acc"])
    wrong = body["mistakes"]
    assert all(m["true"] != m["predicted"] and 0 < m["probability"] <= 1 for m in wrong)
    assert [m["probability"] for m in wrong] == sorted((m["probability"] for m in wrong), reverse=True)


def test_evaluate_prints_the_saved_evaluation_as_it_prints_a_scored_one(run, copy, no_scoring, monkeypatch, capsys):
    assert main(["evaluate", str(run.path)]) == 0  # read back: scoring would fail (no_scoring)
    read = capsys.readouterr().out.replace(str(run.path), "RUN")
    monkeypatch.undo()
    (copy.path / "evaluation.json").unlink()
    assert main(["evaluate", str(copy.path)]) == 0  # scored, and saved again
    assert capsys.readouterr().out.replace(str(copy.path), "RUN") == read
    assert saved(copy) == saved(run)


def test_other_weights_or_an_older_file_are_scored_again_and_saved(copy, no_scoring, monkeypatch):
    body = saved(copy)
    for stale in ({**body, "weights_sha256": "0" * 64}, {k: v for k, v in body.items() if k != "weights_sha256"}):
        (copy.path / "evaluation.json").write_text(json.dumps(stale))
        assert evaluation.saved_evaluation(copy) is None
        with pytest.raises(AssertionError, match="scored again"):
            evaluation.evaluation_of(copy)
    monkeypatch.undo()
    assert evaluation.evaluation_of(copy).accuracy == pytest.approx(body["accuracy"])
    assert saved(copy) == body  # stamped again with the same weights


def test_other_data_is_scored_not_read(run, no_scoring, tmp_path):
    with pytest.raises(AssertionError, match="scored again"):
        evaluation.evaluation_of(run, data=str(make_folder(tmp_path / "other", per_class=5)))


def test_a_damaged_file_is_an_error_naming_it(copy):
    body = saved(copy)
    (copy.path / "evaluation.json").write_text(json.dumps({**body, "mistakes": "none"}))
    with pytest.raises(convscope.CheckpointError, match="evaluation.json: damaged evaluation"):
        evaluation.evaluation_of(copy)


def test_the_report_studio_and_run_object_read_it(copy, no_scoring):
    page = write_report(copy).read_text()
    assert f"Accuracy <b>{saved(copy)['accuracy']:.2%}</b>" in page
    assert (copy.path / "wrong.png").is_file() == bool(saved(copy)["mistakes"])
    shown = pictures.evaluation(copy.path)
    assert shown["accuracy"] == saved(copy)["accuracy"] and shown["confusion"] == saved(copy)["confusion"]
    assert convscope.load_run(copy.path).evaluate().accuracy == saved(copy)["accuracy"]


def test_detector_commands_refuse_a_classifier(run, capsys):
    assert main(["detect", "evaluate", str(run.path)]) == 2
    assert f"{run.path}: not a detector (its last layer is dense, not detect)" in capsys.readouterr().err
