"""runs/NAME/report.html: one self-contained offline page (images inlined) about a run, and the same pictures as PNGs.

Sections: the model summary, the learning curves, per-class metrics and the confusion matrix, the test images the model
got wrong most confidently with class activation maps (HiResCAM: where it looked), and the feature maps of one test
image.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no screen needed
import matplotlib.pyplot as plt  # noqa: E402

from convscope.evaluation import Evaluation, evaluate  # noqa: E402
from convscope.files import atomic_write_text  # noqa: E402
from convscope.plots import plot_curves  # noqa: E402
from convscope.run import Run, load_model, load_run  # noqa: E402
from convscope.shapes import infer  # noqa: E402
from convscope.summary import COLUMNS, summary_rows  # noqa: E402

log = logging.getLogger("convscope.report")

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1180px;
       padding: 0 1rem; color: #1d1d1f; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2.4rem; border-bottom: 1px solid #ddd; padding-bottom: 0.3rem; }
.facts { color: #555; } .facts b { color: #1d1d1f; }
table { border-collapse: collapse; font-size: 0.92rem; margin: 0.8rem 0; }
th, td { padding: 0.28rem 0.7rem; border-bottom: 1px solid #e5e5e5; text-align: right; }
th { background: #f5f5f7; } td.l, th.l { text-align: left; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.note { color: #666; font-size: 0.9rem; }
"""


def write_report(run: Run | str | Path, evaluation: Evaluation | None = None, wrong: int = 8) -> Path:
    """Write run/report.html (and curves.png, confusion.png, wrong.png, featuremaps/*.png); return its path."""
    run = run if isinstance(run, Run) else load_run(run)
    if run.spec.layers[-1].layer_type == "detect":  # a detector's report has mAP, PR curves and boxes instead
        from convscope.detect.predict import write_detector_report

        return write_detector_report(run)
    evaluation = evaluation or evaluate(run)
    curves = plot_curves(run.metrics(), run.path / "curves.png", title=f"{run.path.name}: learning curves")
    sections = [
        _header(run, evaluation),
        _section("Model", _summary_table(run)),
        _section("Learning curves", _img(curves)),
        _section("Test results", _metrics_table(evaluation) + _img(run.path / "confusion.png")),
        _section("Most confidently wrong", _wrong_section(run, evaluation, wrong)),
        _section("Feature maps of one test image", _featuremap_section(run, evaluation)),
    ]
    return save_page(run, sections)


def save_page(run: Run, sections: list[str]) -> Path:
    """run/report.html: one self-contained page of `sections` (HTML), pictures inlined."""
    page = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{_e(run.path.name)} — convscope report</title>"
        f"<style>{CSS}</style></head><body>{''.join(sections)}</body></html>\n"
    )
    path = run.path / "report.html"
    atomic_write_text(path, page)
    log.info("report: %s", path)
    return path


def _e(text) -> str:
    return html.escape(str(text))


def _img(path: Path, alt: str = "") -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<p><img alt="{_e(alt or Path(path).stem)}" src="data:image/png;base64,{data}"></p>'


def _section(title: str, body: str) -> str:
    return f"<h2>{_e(title)}</h2>{body}"


def _header(run: Run, ev: Evaluation) -> str:
    scores = [("test accuracy", f"{ev.accuracy:.2%}"), ("test images", f"{int(ev.confusion.sum()):,}")]
    return page_header(run, scores, _augmentation_text(run.config))


def page_header(run: Run, scores: list[tuple[str, str]], augmentation: str) -> str:
    """The run's name, then its test `scores` and how it was trained, as one line of facts."""
    results, cfg = run.results(), run.config
    facts = [
        *scores,
        ("epochs", results.get("epochs", "?")),
        ("training time", f"{results.get('train_seconds', float('nan')):.0f} s"),
        ("data", run.data.name),
        ("optimizer", f"{cfg.optimizer}, lr {cfg.learning_rate:g}, {cfg.schedule}, batch {cfg.batch_size}"),
        ("augmentation", augmentation),
        ("seed", cfg.seed),
    ]
    text = " · ".join(f"{_e(k)} <b>{_e(v)}</b>" for k, v in facts)
    made = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return f"<h1>{_e(run.path.name)}</h1><p class=facts>{text}</p><p class=note>written {made} by convscope</p>"


def _augmentation_text(cfg) -> str:
    text = cfg.augmentation().text()
    if not cfg.cache_features:
        return text
    # The head's phase trains on features computed once, from the images as they are.
    return (
        f"none on cached features, then {text} while fine-tuning" if cfg.finetune_epochs else "none (cached features)"
    )


def _summary_table(run: Run) -> str:
    report = infer(run.spec)
    align = [" class=l" if justify == "left" else "" for _, justify in COLUMNS]
    head = "".join(f"<th{a}>{_e(h)}</th>" for a, (h, _) in zip(align, COLUMNS, strict=True))
    rows = "".join(
        "<tr>" + "".join(f"<td{a}>{_e(cell)}</td>" for a, cell in zip(align, row, strict=True)) + "</tr>"
        for row in summary_rows(report)
    )
    totals = f"<p>Total params <b>{report.params:,}</b> · multiply-adds per image <b>{report.macs:,}</b></p>"
    return f"<table><tr>{head}</tr>{rows}</table>{totals}"


def _metrics_table(ev: Evaluation) -> str:
    head = "<tr><th class=l>class</th><th>precision</th><th>recall</th><th>F1</th><th>images</th></tr>"
    rows = "".join(
        f"<tr><td class=l>{_e(r['class'])}</td><td>{r['precision']:.3f}</td><td>{r['recall']:.3f}</td>"
        f"<td>{r['f1']:.3f}</td><td>{r['support']:,}</td></tr>"
        for r in ev.per_class()
    )
    confused = "; ".join(f"{_e(t)} → {_e(p)} ({n})" for t, p, n in ev.most_confused())
    summary = f"<p>Accuracy <b>{ev.accuracy:.2%}</b>, loss {ev.loss:.4f}. Most confused: {confused}</p>"
    return f"{summary}<table>{head}{rows}</table>"


def _wrong_section(run: Run, ev: Evaluation, k: int) -> str:
    index = ev.confidently_wrong(k)
    if not index:
        return "<p>The model got every test image right.</p>"
    path = save_wrong_png(run, ev, index, run.path / "wrong.png")
    note = (
        "<p class=note>The test images the model was most sure of and still got wrong. The colours are the "
        "HiResCAM map of the predicted class (a Grad-CAM that keeps each position's own gradient): where the last "
        "feature maps pushed the model towards its (wrong) answer.</p>"
    )
    return note + _img(path, "most confidently wrong test images")


def save_wrong_png(run: Run, ev: Evaluation, index: list[int], path: Path) -> Path:

    from convscope.inspect.gradcam import gradcam, overlay
    from convscope.training.tensors import normalise, run_stats, to_tensor

    model = load_model(run)
    mean, std = run_stats(run)
    cols = min(4, len(index))
    rows = -(-len(index) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.1 * cols, 3.5 * rows), dpi=110, squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, i in zip(axes.flat, index, strict=False):
        image = ev.images[i]
        predicted = int(ev.probabilities[i].argmax())
        cam = gradcam(model, normalise(to_tensor(image[None]), mean, std), class_index=predicted)
        ax.imshow(overlay(image, cam.heatmap), interpolation="nearest")
        ax.set_title(
            f"test #{i}: {ev.classes[ev.labels[i]]}\npredicted {ev.classes[predicted]} "
            f"({ev.probabilities[i, predicted]:.1%})",
            fontsize=9,
        )
    fig.suptitle("Most confidently wrong test images, with the HiResCAM map of the predicted class")
    fig.savefig(path)
    plt.close(fig)
    return path


def _featuremap_section(run: Run, ev: Evaluation) -> str:
    from PIL import Image

    from convscope.inspect.featuremaps import feature_maps, save_feature_map_sheets

    folder = run.path / "featuremaps"
    folder.mkdir(exist_ok=True)
    sample = folder / "input.png"
    image = ev.images[0]
    Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(sample)
    label = ev.classes[ev.labels[0]]
    sheets = save_feature_map_sheets(feature_maps(run, sample), folder)
    note = (
        f"<p class=note>Test image #0 ({_e(label)}) through every conv and pool layer: one tile per filter, "
        "bright where the filter's pattern is present.</p>"
    )
    return note + "".join(_img(p, p.stem) for p in sheets)
