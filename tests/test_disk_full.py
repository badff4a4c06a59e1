"""A disk that fills up while convscope writes a picture, an export or the report: one line naming the file, the
previous file left as it was, no empty file, no temporary file; a training whose report cannot be written is saved."""

from pathlib import Path

import pytest
from fault_harness import tmpfs
from helpers import make_folder

from convscope.cli import main
from convscope.errors import OutputError
from convscope.tasks.train import train

FULL = "No space left on device"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("images"), per_class=20)


@pytest.fixture(scope="module")
def run_dir(images, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    train(model="lenet5", data=str(images), epochs=1, batch_size=16, threads=1, out=str(out), report=False)
    return out


@pytest.fixture
def small_disk(tmp_path):
    """A folder on a tmpfs of its own (16 MiB) that the test can fill up; mounting needs root."""
    with tmpfs(tmp_path / "disk", "16m") as folder:
        yield folder


def fill(folder: Path) -> Path:
    """Write a file into `folder` until its file system has no byte left; returns the file."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (1 << 20, 1 << 12, 1 << 9, 1):
            try:
                while True:
                    f.write(bytes(chunk))
            except OSError:
                pass
    return filler


def _leftovers(folder: Path) -> list[str]:
    """Empty files and temporary files anywhere under `folder` (a failed write must leave neither); the run's lock
    file, empty by design, aside."""
    found = (p for p in folder.rglob("*") if p.is_file() and p.name != ".lock")
    return [p.name for p in found if p.stat().st_size == 0 or p.name.endswith(".tmp")]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(
    ("argv", "name"),
    [(["filters", "{run}"], "f.png"), (["export", "{run}", "--format", "torchscript"], "model.pt")],
)
def test_a_picture_or_an_export_on_a_full_disk_is_one_line_and_the_old_file_stays(
    run_dir, small_disk, capsys, argv, name
):
    target = small_disk / name
    argv = [a.format(run=run_dir) for a in argv] + ["--out", str(target)]
    assert main(argv) == 0
    before = target.read_bytes()
    capsys.readouterr()
    fill(small_disk)
    assert main(argv) == 2
    assert f"{target}: cannot write ({FULL})" in _one_line(capsys)
    assert target.read_bytes() == before
    assert _leftovers(small_disk) == []


def test_a_report_that_cannot_be_written_leaves_the_training_saved_and_says_how_to_draw_it(images, small_disk, capsys):
    class FillsTheDisk:  # the disk fills up once training is done, before the report is drawn
        def on_start(self, *args): ...
        def on_batch(self, *args): ...
        def on_epoch(self, row): ...
        def on_end(self, run, results):
            fill(small_disk)

    out = small_disk / "run"
    with pytest.raises(OutputError) as caught:
        train(model="lenet5", data=str(images), epochs=1, batch_size=16, threads=1, out=str(out),
              callbacks=[FillsTheDisk()])  # fmt: skip
    message = str(caught.value)
    assert "\n" not in message
    assert f"{out / 'curves.png'}: cannot write ({FULL})" in message
    assert f"the training itself is saved in {out} (`convscope report {out}` draws the report again)" in message
    assert (out / "results.json").is_file() and (out / "weights" / "best.safetensors").is_file()
    assert _leftovers(small_disk) == []

    (small_disk / "filler").unlink()  # room again: the report is drawn from the saved run
    assert main(["report", str(out)]) == 0
    before = {name: (out / name).read_bytes() for name in ("report.html", "curves.png", "confusion.png")}
    capsys.readouterr()
    fill(small_disk)
    assert main(["report", str(out)]) == 2
    assert f": cannot write ({FULL})" in _one_line(capsys)
    assert {name: (out / name).read_bytes() for name in before} == before
    assert _leftovers(small_disk) == []
