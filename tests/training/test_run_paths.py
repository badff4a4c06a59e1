"""A run records its data as an absolute path, so evaluate and report work from any working folder."""

from helpers import make_folder

from convscope.classify.evaluate import evaluate
from convscope.run import load_run
from convscope.tasks.train import train


def test_a_relative_data_path_is_recorded_absolute_and_evaluate_works_elsewhere(tmp_path, monkeypatch):
    make_folder(tmp_path / "work" / "images", per_class=20)
    monkeypatch.chdir(tmp_path / "work")
    run = train(model="lenet5", data="images", epochs=1, batch_size=16, threads=1, out="run", report=False)
    assert run.config.data == str((tmp_path / "work" / "images").resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    again = evaluate(load_run(tmp_path / "work" / "run"))
    assert again.accuracy == load_run(tmp_path / "work" / "run").results()["test_acc"]
    # Built-in dataset names stay names.
    from convscope.config import TrainConfig

    assert TrainConfig(data="fashion-mnist").with_absolute_paths().data == "fashion-mnist"
