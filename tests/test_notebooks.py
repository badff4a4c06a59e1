"""The lesson's notebooks (notebooks/*.ipynb) run from top to bottom in a Jupyter kernel and show what they are there
to show; and a notebook that trains still shows the user's own matplotlib pictures and its progress bars' numbers.

Each notebook runs as notebooks/run_all.py runs it (its `execute`: a kernel of this very Python, a working folder of
its own, here a temporary one), with the team's shared data (../shared/data beside the checkout): a notebook whose
data is missing is skipped, with the reason. The executed copies are written to the temporary folder, never over the
committed notebooks. On a 2-core CPU the four take about 2½ minutes together, each under a minute.
"""

import importlib.util
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebook extra is not installed: pip install -e '.[notebook]'")
pytest.importorskip("nbclient", reason="the notebook extra is not installed: pip install -e '.[notebook]'")
pytest.importorskip("ipykernel", reason="the notebook extra is not installed: pip install -e '.[notebook]'")

from helpers import SHARED_DATA, shared_data  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SYSTEM_FASHION = Path("/usr/share/datasets/fashion-mnist")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _runner():
    spec = importlib.util.spec_from_file_location("notebooks_run_all", NOTEBOOKS / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


RUNNER = _runner()


def execute(nb_or_name, tmp_path: Path, monkeypatch):
    """Run a notebook (a file name in notebooks/, or a notebook made here) in tmp_path; the executed copy is saved
    there. A cell that raises fails the test (nbclient's CellExecutionError, with the cell and its traceback)."""
    monkeypatch.setenv("CONVSCOPE_SHARED_DATA", str(SHARED_DATA))  # the kernel inherits the environment
    if isinstance(nb_or_name, str):
        source, name = NOTEBOOKS / nb_or_name, nb_or_name
    else:
        source, name = tmp_path / "made.ipynb", "made.ipynb"
        nbformat.write(nb_or_name, source)
    work = tmp_path / "work"
    work.mkdir()
    nb = RUNNER.execute(source, work)
    nbformat.write(nb, tmp_path / f"executed-{name}")
    return nb


def cell(nb, tag: str):
    """The code cell tagged `tag` (its metadata's tags)."""
    found = [c for c in nb.cells if tag in c.get("metadata", {}).get("tags", [])]
    assert len(found) == 1, f"one cell tagged {tag!r} expected, found {len(found)}"
    return found[0]


def text(c) -> str:
    """Everything a cell showed as text: streams, text/plain and text/html."""
    parts = []
    for output in c.outputs:
        parts.append(output.get("text", ""))
        parts += [str(output.get("data", {}).get(kind, "")) for kind in ("text/plain", "text/html")]
    return "\n".join(parts)


def pictures(c) -> int:
    """How many pictures a cell showed: PNG outputs, and PNGs inside its HTML outputs."""
    data = [output.get("data", {}) for output in c.outputs]
    return sum("image/png" in d or "data:image/png;base64," in str(d.get("text/html", "")) for d in data)


def percent(after: str, where: str) -> float:
    """The number (a percentage) that follows `after` in `where`."""
    found = re.search(re.escape(after) + r" ([0-9.]+)%", where)
    assert found, f"{after!r} followed by a percentage not in: {where[:300]}"
    return float(found.group(1))


def no_stderr(nb) -> None:
    """Nothing went to stderr: no warning shows in red in the notebook."""
    shown = [o.text for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("name") == "stderr"]
    assert shown == []


def test_building_blocks(tmp_path, monkeypatch):
    nb = execute("1-building-blocks.ipynb", tmp_path, monkeypatch)
    no_stderr(nb)
    assert "(300, 451, 3), dtype('uint8')" in text(cell(nb, "image"))
    conv = cell(nb, "conv")
    assert "sum of the 9 products = -284" in text(conv) and "⌈32/2⌉ = 16" in text(conv) and pictures(conv)
    pool = cell(nb, "pool")
    assert "min of the window = 109" in text(pool) and pictures(pool)
    assert "(150, 225)" in text(cell(nb, "featuremap")) and pictures(cell(nb, "featuremap"))
    assert "(75, 112)" in text(cell(nb, "pooled"))
    assert "Total params: 20,042" in text(cell(nb, "summary"))
    shapes = text(cell(nb, "shapes"))
    assert "padding valid, stride 2: 32×32 → 14×14" in shapes and "32×32 → 11×11   ⌈32/3⌉ = 11" in shapes


def test_cnn_tutorial(tmp_path, monkeypatch):
    shared_data("cifar10-jpg")
    nb = execute("2-cnn-tutorial.ipynb", tmp_path, monkeypatch)
    no_stderr(nb)
    assert "((1000, 32, 32, 3), (1000, 1), (500, 32, 32, 3), (500, 1))" in text(cell(nb, "load"))
    assert pictures(cell(nb, "verify")) == 1
    assert "Total params: 122,570" in text(cell(nb, "summary"))  # the tutorial's model.summary()
    trained = text(cell(nb, "train"))
    assert "epoch 10/10: 100%" in trained and "val_accuracy=" in trained
    assert pictures(cell(nb, "plot")) == 1 and pictures(cell(nb, "history")) == 1
    evaluation = text(cell(nb, "evaluate"))
    assert percent("test accuracy", evaluation) > 20  # 10 classes: chance is 10 %; measured 33–36 %
    for tag in ("predict", "featuremaps", "gradcam", "filters", "filmstrip", "confused"):
        assert pictures(cell(nb, tag)) >= 1, tag
    assert "epoch 10/10: 100%" in text(cell(nb, "folder"))
    assert percent("test accuracy", text(cell(nb, "folder-run"))) > 20


def test_transfer_learning(tmp_path, monkeypatch):
    shared_data("cats_and_dogs_filtered")
    nb = execute("3-transfer-learning.ipynb", tmp_path, monkeypatch)
    no_stderr(nb)
    assert pictures(cell(nb, "photos")) == 1
    doctor = text(cell(nb, "doctor"))  # the Diagnosis shows its counts and findings, with thumbnails
    assert "1 near duplicate pair(s) within a split" in doctor and "27 tiny image(s)" in doctor
    assert "data:image/" in doctor and "<table" in doctor
    assert "epoch 4/4: 100%" in text(cell(nb, "train"))  # 3 epochs of the head, 1 of fine-tuning
    assert percent("test accuracy", text(cell(nb, "evaluate"))) >= 80  # measured 94 % on these 200 photos
    assert "200 images" in text(cell(nb, "evaluate"))
    assert pictures(cell(nb, "predict")) == 1 and "Prediction(" in text(cell(nb, "predict"))
    assert "GradCam(dogs" in text(cell(nb, "gradcam")) and pictures(cell(nb, "gradcam")) == 1
    assert "GradCam(cats" in text(cell(nb, "gradcam-other"))


def test_object_detection(tmp_path, monkeypatch):
    if not SYSTEM_FASHION.is_dir():
        pytest.skip(f"{SYSTEM_FASHION} missing: install the Debian package dataset-fashion-mnist")
    shared_data("bccd-voc")
    nb = execute("4-object-detection.ipynb", tmp_path, monkeypatch)
    no_stderr(nb)
    assert "nc: 10" in text(cell(nb, "scenes"))
    assert "epoch 14/14: 100%" in text(cell(nb, "train")) and "val_map50=" in text(cell(nb, "train"))
    evaluation = text(cell(nb, "evaluate"))
    assert float(re.search(r"mAP@0.5 ([0-9.]+)", evaluation).group(1)) > 0.1  # measured 0.385
    assert "precision–recall" in evaluation and pictures(cell(nb, "evaluate")) == 1
    found = cell(nb, "predict")
    assert pictures(found) == 1 and "Found('runs/fashion-scenes/images/test/000004.png': " in text(found)
    assert re.search(r"\d\.\d\d  x +\d", text(cell(nb, "boxes")))
    assert pictures(cell(nb, "bccd")) == 1


def test_a_notebook_that_trains_still_shows_the_users_pyplot_and_its_epoch_numbers(tmp_path, monkeypatch):
    """The library never touches pyplot or the backend (tests/test_matplotlib_state.py); here in a real kernel, with
    matplotlib's inline backend: after convscope.train, plt.show() still shows the user's figure. The training cell
    keeps a bar per epoch whose saved text is its last state (numbers included), not the '0%' it began with."""
    if not SYSTEM_FASHION.is_dir():
        pytest.skip(f"{SYSTEM_FASHION} missing: install the Debian package dataset-fashion-mnist")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import sys\n\nimport convscope\n\nprint(sys.executable)"),
        nbformat.v4.new_code_cell("run = convscope.train(data='fashion-mnist', per_class=5, epochs=1, out='runs/a')"),
        nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\n\nplt.plot([1, 2, 3])\nplt.show()"),
    ]
    nb = execute(nb, tmp_path, monkeypatch)
    started, trained, drawn = nb.cells
    assert started.outputs[0].text.strip() == sys.executable  # the kernel is this Python's ipykernel
    assert [o.output_type for o in drawn.outputs] == ["display_data"] and "image/png" in drawn.outputs[0].data
    bars = [o.data for o in trained.outputs if "data" in o and WIDGET_VIEW in o.data]
    assert len(bars) == 1  # a Jupyter widget (tqdm.auto with ipywidgets), one per epoch
    assert bars[0]["text/plain"].startswith("epoch 1/1: 100%|")
    assert "loss=2." in bars[0]["text/plain"] and "accuracy=" in bars[0]["text/plain"]  # (no validation split here)
    assert "training fashion-fast (28×28×1) on fashion-mnist → runs/a" in text(trained)


@pytest.mark.parametrize("path", RUNNER.notebooks(), ids=lambda p: p.name)
def test_the_committed_notebooks_carry_their_outputs(path):
    """Committed executed (notebooks/run_all.py), so that they read on the web as they ran: every code cell ran, in
    order, without an error; no widget view (a saved one shows '0%' or nothing where no Jupyter runs it)."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))
    outputs = [o for c in code for o in c.outputs]
    assert outputs and not [o for o in outputs if o.output_type == "error"]
    assert not [o for o in outputs if WIDGET_VIEW in o.get("data", {})] and "widgets" not in nb.metadata
