"""runs/NAME/report.html: one self-contained offline page (images inlined) about a run, and the same pictures as PNGs.

Sections: the model summary, the learning curves, per-class metrics and the confusion matrix, the test images the model
got wrong most confidently with class activation maps (HiResCAM: where it looked), the feature maps of one test
image, and the patterns the filters of a middle and a deep layer respond to most (inspect.patterns).
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from convscope.classify.evaluate import Evaluation, Mistake, evaluation_of, with_test_images
from convscope.errors import DataError
from convscope.inspect.html import escape, inline_image, page_header, save_page, section, summary_table
from convscope.loaded import LoadedRun, load
from convscope.plots import plot_curves
from convscope.run import CONFUSION, CURVES, FEATUREMAPS, PATTERNS, WRONG, Run, load_run
from convscope.show import Picture

REPORT_FILTERS, REPORT_STEPS, REPORT_SIDE = 8, 64, 128  # patterns in the report: a few, quickly, at most 128 px


def write_report(run: Run | str | Path, evaluation: Evaluation | None = None, wrong: int = 8) -> Path:
    """Write a classifier run's run/report.html (and curves.png, confusion.png, wrong.png, featuremaps/*.png); return
    its path. The numbers are `evaluation`'s, else the ones saved in the run folder (evaluation_of); the pictures
    read the test images again, but the network runs only on the few they show."""
    run = load_run(run)
    evaluation = with_test_images(run, evaluation or evaluation_of(run))
    loaded = load(run, device="cpu")  # the weights are read once, for every picture of the page
    curves = plot_curves(run.metrics(), run.path / CURVES, title=f"{run.path.name}: learning curves")
    sections = [
        _header(run, evaluation),
        section("Model", summary_table(run)),
        section("Learning curves", inline_image(curves)),
        section("Test results", _metrics_table(evaluation) + inline_image(run.path / CONFUSION)),
        section("Most confidently wrong", _wrong_section(loaded, evaluation, wrong)),
        section("Feature maps of one test image", _featuremap_section(loaded, evaluation)),
        section("What the filters look for", _pattern_section(loaded)),
    ]
    return save_page(run, sections)


def _header(run: Run, ev: Evaluation) -> str:
    scores = [("test accuracy", f"{ev.accuracy:.2%}"), ("test images", f"{int(ev.confusion.sum()):,}")]
    return page_header(run, scores, _augmentation_text(run.config))


def _augmentation_text(cfg) -> str:
    text = cfg.augmentation().text()
    if not cfg.cache_features:
        return text
    # The head's phase trains on features computed once, from the images as they are.
    return (
        f"none on cached features, then {text} while fine-tuning" if cfg.finetune_epochs else "none (cached features)"
    )


def _metrics_table(ev: Evaluation) -> str:
    head = "<tr><th class=l>class</th><th>precision</th><th>recall</th><th>F1</th><th>images</th></tr>"
    rows = "".join(
        f"<tr><td class=l>{escape(r['class'])}</td><td>{r['precision']:.3f}</td><td>{r['recall']:.3f}</td>"
        f"<td>{r['f1']:.3f}</td><td>{r['support']:,}</td></tr>"
        for r in ev.per_class()
    )
    confused = "; ".join(f"{escape(t)} → {escape(p)} ({n})" for t, p, n in ev.most_confused())
    summary = f"<p>Accuracy <b>{ev.accuracy:.2%}</b>, loss {ev.loss:.4f}. Most confused: {confused}</p>"
    return f"{summary}<table>{head}{rows}</table>"


def _wrong_section(loaded: LoadedRun, ev: Evaluation, k: int) -> str:
    mistakes = ev.mistakes(k)
    if not mistakes:
        return "<p>The model got every test image right.</p>"
    path = save_wrong_png(loaded, ev, mistakes, loaded.run.path / WRONG)
    note = (
        "<p class=note>The test images the model was most sure of and still got wrong. The colours are the "
        "HiResCAM map of the predicted class (a Grad-CAM that keeps each position's own gradient): where the last "
        "feature maps pushed the model towards its (wrong) answer.</p>"
    )
    return note + inline_image(path, "most confidently wrong test images")


def save_wrong_png(run: LoadedRun | Run, ev: Evaluation, mistakes: list[Mistake], path: Path) -> Path:
    """wrong_figure saved as a PNG at `path`; returns the path."""
    return wrong_figure(run, ev, mistakes).save(path)


def wrong_figure(run: LoadedRun | Run, ev: Evaluation, mistakes: list[Mistake]) -> Figure:
    """The test images the model got wrong (e.g. `ev.mistakes(8)`), each overlaid with the HiResCAM map of the class
    the model predicted, titled with the true class, the prediction and its probability; four to a row.

    The images are `ev.images[m.index]` (uint8 H×W×C) as the model took them. Returns a new matplotlib Figure (3.1×3.5
    inches a panel, 110 dpi) with rows × min(4, len(mistakes)) axes. Raises DataError for no mistakes and IndexError
    for an index outside the evaluation's images."""
    from convscope.inspect.gradcam import gradcam, overlay

    if not mistakes:
        raise DataError("the wrong-images figure needs at least one test image index. Received: []")

    loaded = load(run, device="cpu")
    cols = min(4, len(mistakes))
    rows = -(-len(mistakes) // cols)
    fig = Picture(figsize=(3.1 * cols, 3.5 * rows), dpi=110, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, m in zip(axes.flat, mistakes, strict=False):
        image = ev.images[m.index]
        cam = gradcam(loaded.model, loaded.tensor(image[None]), class_index=m.predicted)
        ax.imshow(overlay(image, cam.heatmap), interpolation="nearest")
        ax.set_title(
            f"test #{m.index}: {ev.classes[m.true]}\npredicted {ev.classes[m.predicted]} ({m.probability:.1%})",
            fontsize=9,
        )
    fig.suptitle("Most confidently wrong test images, with the HiResCAM map of the predicted class")
    return fig


def _featuremap_section(loaded: LoadedRun, ev: Evaluation) -> str:
    from PIL import Image

    from convscope.inspect.featuremaps import feature_maps, save_feature_map_sheets
    from convscope.show import save_image

    folder = loaded.run.path / FEATUREMAPS
    sample = folder / "input.png"
    image = ev.images[0]
    save_image(Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image), sample)
    label = ev.classes[ev.labels[0]]
    sheets = save_feature_map_sheets(feature_maps(loaded, sample), folder)
    note = (
        f"<p class=note>Test image #0 ({escape(label)}) through every conv and pool layer: one tile per filter, "
        "bright where the filter's pattern is present.</p>"
    )
    return note + "".join(inline_image(p, p.stem) for p in sheets)


def _pattern_section(loaded: LoadedRun) -> str:
    from convscope.inspect.patterns import filter_patterns, report_layers, save_pattern_sheet

    run = loaded.run
    folder = run.path / PATTERNS  # made by the first sheet's write
    parts = []
    for layer in report_layers(loaded.model):
        side = min(REPORT_SIDE, max(run.spec.input[:2]))
        patterns = filter_patterns(loaded, layer, steps=REPORT_STEPS, size=side, first=REPORT_FILTERS, device="cpu")
        path = save_pattern_sheet(patterns, folder / f"{layer}.png")
        parts.append(f"<p class=note>{escape(patterns.line())}</p>" + inline_image(path, f"patterns of {layer}"))
    note = (
        "<p class=note>For each filter, the image that raises its mean response most, found by changing the image "
        "(not the network) by gradient ascent from gray noise (Chollet; Olah et al. 2017). Early layers look for "
        "edges and colours, deeper ones for textures and parts.</p>"
    )
    return note + "".join(parts) if parts else "<p>The network has no conv layer of its own.</p>"
