"""The library never touches the user's matplotlib: no `matplotlib.use`, no pyplot, figures of its own.

It used to call matplotlib.use("Agg") on import; in a notebook that replaced the inline backend, and every later
plt.show() of the user showed nothing. The inline backend needs Jupyter, so the subprocess below stands in for it with
another backend the user chose ("svg"): after convscope has drawn and saved pictures, it must still be the backend,
and pyplot must never have been imported.
"""

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "convscope"


def _pyplot_imports(tree: ast.AST) -> list[int]:
    """Line numbers of `import matplotlib.pyplot`, `from matplotlib import pyplot`, `from matplotlib.pyplot import`."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.startswith("matplotlib.pyplot") for a in node.names):
            lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("matplotlib.pyplot") or (
                node.module == "matplotlib" and any(a.name == "pyplot" for a in node.names)
            ):
                lines.append(node.lineno)
    return lines


def test_no_module_sets_the_backend_or_imports_pyplot():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 50  # the package really was found
    found = []
    for path in files:
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(SRC.parent)
        found += [f"{where}: matplotlib.use(" for line in text.splitlines() if "matplotlib.use(" in line]
        found += [f"{where}:{n}: imports pyplot" for n in _pyplot_imports(ast.parse(text, str(path)))]
    assert found == []


DRAW = """
import importlib.util
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("svg")  # the user's choice, made before convscope is imported

import numpy as np
import torch
from PIL import Image

import convscope
from convscope.builder import build
from convscope.explain import explain_conv
from convscope.explain_plot import save_walkthrough_png, walkthrough_figure
from convscope.inspect.featuremaps import FeatureMaps, feature_map_figure, layer_maps, save_feature_map_sheets
from convscope.inspect.filters import filters_figure
from convscope.inspect.gradcam import gradcam, gradcam_figure
from convscope.plots import confusion_figure, curves_figure, plot_confusion, plot_curves
from convscope.spec import Conv, Flatten, Dense, NetSpec

out = Path(tempfile.mkdtemp())
sizes = {}

rows = [
    {"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "train_acc": 0.5 + e / 10, "val_acc": 0.4 + e / 10}
    for e in (1, 2, 3)
]
fig = curves_figure(rows, "curves")
print("curves axes", len(fig.axes), [len(ax.lines) for ax in fig.axes])
sizes["curves"] = Image.open(plot_curves(rows, out / "curves.png", "curves")).size

evaluation = SimpleNamespace(confusion=np.array([[3, 1], [0, 4]]), classes=("cat", "dog"))
print("confusion axes", len(confusion_figure(evaluation, "confusion").axes))
sizes["confusion"] = Image.open(plot_confusion(evaluation, out / "confusion.png", "confusion")).format

model = build(NetSpec("8x8x1", [Conv(2, 3, padding="same"), Flatten(), Dense(2)]))
image = np.arange(64, dtype=np.uint8).reshape(8, 8, 1) * 4
x = torch.from_numpy(image).float().permute(2, 0, 1)[None] / 255
maps = FeatureMaps(image, "test image", layer_maps(model, x))
print("featuremap axes", len(feature_map_figure(maps, "conv1").axes))  # 2 tiles, the input, the colorbar
sizes["featuremaps"] = [Image.open(p).size for p in save_feature_map_sheets(maps, out / "maps")]
print("filters axes", len(filters_figure(model).axes))  # 2 tiles, the colorbar
print("gradcam axes", len(gradcam_figure(gradcam(model, x), image).axes))  # 3 panels, the colorbar

w = explain_conv(np.arange(36, dtype=float).reshape(6, 6), np.ones((3, 3)), padding=1)
print("walkthrough axes", len(walkthrough_figure(w).axes))  # 3 panels, the colorbar
sizes["walkthrough"] = Image.open(save_walkthrough_png(w, out / "walk.png")).size

if importlib.util.find_spec("pycocotools"):  # the detection extra
    from convscope.detect.metrics import coco_evaluate, pr_curves_figure

    truth = [(np.array([[1, 1, 5, 5]], np.float32), np.array([0]))]
    found = [(np.array([[1, 1, 5, 5]], np.float32), np.array([0.9]), np.array([0]))]
    print("pr axes", len(pr_curves_figure(coco_evaluate(truth, found, ["cat"], (8, 8)), "pr").axes))
else:
    print("pr axes", 1)

print("sizes", sizes)
print("backend", matplotlib.get_backend())
print("pyplot imported", "matplotlib.pyplot" in sys.modules)
"""


def test_drawing_leaves_the_users_backend_and_pyplot_alone():
    done = subprocess.run([sys.executable, "-c", DRAW], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:-3] == [
        "curves axes 2 [2, 2]",  # loss and accuracy, training and validation lines in each
        "confusion axes 2",  # the matrix and its colorbar
        "featuremap axes 4",
        "filters axes 3",
        "gradcam axes 4",
        "walkthrough axes 4",
        "pr axes 1",
    ]
    sizes = (
        "sizes {'curves': (1210, 462), 'confusion': 'PNG', 'featuremaps': [(1000, 413)], 'walkthrough': (1600, 660)}"
    )
    assert lines[-3:] == [sizes, "backend svg", "pyplot imported False"]
