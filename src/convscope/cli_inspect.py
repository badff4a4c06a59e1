"""CLI commands that look inside a trained run: featuremaps, filters, top-activations, gradcam, report."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from convscope.cli_args import add_device_flag, int_in
from convscope.run import FEATUREMAPS

OVERWRITE_HELP = "replace an existing file of that name that convscope did not write"
FOLDER_HELP = "; a name without a suffix is a folder, made when missing"


def add_parsers(sub, console: Console) -> None:
    p = sub.add_parser("featuremaps", help="every response map of the chosen layers for one image, as PNG sheets")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("image", metavar="IMAGE", help="an image file or a sample photo name (chelsea, coffee, ...)")
    p.add_argument("--layer", action="append", help="a layer name (repeat for more; default: every conv and pool)")
    p.add_argument("--out", help="folder for the PNGs (default RUN/featuremaps)")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    add_device_flag(p)
    p.set_defaults(run=lambda args: cmd_featuremaps(args, console))

    p = sub.add_parser(
        "filters",
        help="a conv layer's filters as pictures (default: the first conv layer); with --patterns, the image each "
        "filter responds to most",
    )
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--layer", help="a conv layer name; with --patterns any layer with feature maps, or a module of a "
                   "pretrained base such as base1.net.blocks.15")  # fmt: skip
    p.add_argument(
        "--patterns",
        action="store_true",
        help="draw what each filter looks for, found by gradient ascent (Chollet; Olah et al. 2017), not its weights",
    )
    p.add_argument("--filters", help="with --patterns: which filters, e.g. 0-15 or 3,7,9 (default: the first 16)")
    p.add_argument("--steps", type=int_in(1, 10_000), default=128, help="with --patterns: ascent steps (default 128)")
    p.add_argument(
        "--size", type=int_in(8, 1024), help="with --patterns: the pictures' side (default: the run's input)"
    )
    add_device_flag(p)
    p.add_argument(
        "--out", help="picture file or folder (default RUN/filters-LAYER.png, or RUN/patterns-LAYER.png)" + FOLDER_HELP
    )
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.set_defaults(run=lambda args: cmd_filters(args, console))

    p = sub.add_parser("top-activations", help="for each filter of a layer, the dataset images that excite it most")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--layer", required=True, help="a layer with feature maps, e.g. conv2")
    p.add_argument("--k", type=int_in(1, 10_000), default=9, help="images per filter (default 9)")
    p.add_argument("--data", help="another dataset (default: the run's own), its test split")
    p.add_argument("--filters", help="which filters to draw, e.g. 0-15 or 3,7,9 (default: the first 16)")
    p.add_argument("--out", help="picture file or folder (default RUN/top-LAYER.png)" + FOLDER_HELP)
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    add_device_flag(p)
    p.set_defaults(run=lambda args: cmd_top(args, console))

    p = sub.add_parser("gradcam", help="where in the image the model looked for a class (HiResCAM or Grad-CAM heatmap)")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("image", metavar="IMAGE", help="an image file or a sample photo name")
    p.add_argument("--class", dest="class_name", help="a class name (default: the predicted class)")
    p.add_argument("--layer", help="a layer with feature maps (default: the last conv block's output)")
    p.add_argument(
        "--method",
        choices=("hirescam", "gradcam", "layercam"),
        default="hirescam",
        help="hirescam (default: each position's own gradient, never all-zero for the predicted class in our "
        "measurements), gradcam (the original, one averaged weight per feature map) or layercam (each position's "
        "positive gradient)",
    )
    p.add_argument(
        "--out",
        help="picture file or folder (default RUN/gradcam-IMAGE[-CLASS][-LAYER][-METHOD].png, what was chosen)"
        + FOLDER_HELP,
    )
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    add_device_flag(p)
    p.set_defaults(run=lambda args: cmd_gradcam(args, console))

    p = sub.add_parser("report", help="write RUN/report.html: summary, curves, metrics, mistakes, feature maps")
    p.add_argument("run_dir", metavar="RUN")
    p.set_defaults(run=lambda args: cmd_report(args, console))


def _picture_out(args: argparse.Namespace, name: str) -> Path:
    """Where the picture goes: --out (a file, or an existing folder to hold `name`), else RUN/`name`; refused in one
    line (out_paths) before any work when it is not convscope's to write."""
    from convscope.out_paths import out_file
    from convscope.show import picture_format

    if args.out is None:
        return Path(args.run_dir) / name
    # In its own run's folder, only this command's own pictures (filters-*, top-*, ...), never the run's files; in
    # another run's folder, nothing.
    path = out_file(args.out, name, args.overwrite, run_names=(name.split("-")[0] + "-*",), own_run=args.run_dir)
    picture_format(path)
    return path


def cmd_featuremaps(args: argparse.Namespace, console: Console) -> None:
    from convscope.inspect.featuremaps import feature_maps, save_feature_map_sheets, sheet_name
    from convscope.out_paths import check_file_in_folder, out_folder

    in_run = (f"{FEATUREMAPS}", f"{FEATUREMAPS}/*")
    if args.out is None:
        out = Path(args.run_dir) / FEATUREMAPS
    else:
        out = out_folder(args.out, in_run, own_run=args.run_dir, writes="featuremaps writes a folder of pictures")
    maps = feature_maps(args.run_dir, args.image, args.layer, device=args.device or "auto")
    if args.out is not None:  # checked before any sheet is written: none, or all
        for layer in maps.layers:
            check_file_in_folder(out / sheet_name(layer), args.overwrite, in_run, own_run=args.run_dir)
    paths = save_feature_map_sheets(maps, out)
    h, w, c = maps.image.shape
    console.print(f"input {h}×{w}×{c} ({maps.conversion})")
    for layer, path in zip(maps.layers, paths, strict=True):
        h, w, c = layer.shape
        low, high = float(layer.maps.min()), float(layer.maps.max())
        console.print(f"{layer.name:<12} {layer.label:<40} {h}×{w}×{c}  values {low:.3g} … {high:.3g}  → {path}")


def cmd_filters(args: argparse.Namespace, console: Console) -> None:
    from convscope.inspect.filters import filter_weights, save_filter_sheet

    if args.patterns:
        _patterns(args, console)
        return
    weights = filter_weights(args.run_dir, args.layer)
    path = _picture_out(args, f"filters-{weights.name}.png")
    save_filter_sheet(weights, path)
    console.print(
        f"{weights.name}: {weights.shape_text}, weights {weights.weights.min():.3g} … "
        f"{weights.weights.max():.3g} → {path}"
    )


def _patterns(args: argparse.Namespace, console: Console) -> None:
    from convscope.inspect.filters import filter_weights
    from convscope.inspect.patterns import filter_patterns, save_pattern_sheet

    layer = args.layer or filter_weights(args.run_dir).name  # the first conv layer, as for the weights
    path = _picture_out(args, f"patterns-{layer}.png")
    patterns = filter_patterns(
        args.run_dir, layer, _filter_list(args.filters), args.steps, args.size, device=args.device or "auto"
    )
    save_pattern_sheet(patterns, path)
    console.print(f"{patterns.line()} → {path}", markup=False)


def _filter_list(text: str | None) -> list[int] | None:
    from convscope.errors import DataError

    if text is None:
        return None
    chosen: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.partition("-")
            chosen += list(range(int(low), int(high or low) + 1))
    except ValueError:
        raise DataError(f"--filters must look like 0-15 or 3,7,9. Received: {text!r}") from None
    return chosen


def cmd_top(args: argparse.Namespace, console: Console) -> None:
    from convscope.data.load import load_dataset
    from convscope.inspect.top_activations import save_top_activations_png, top_activations
    from convscope.run import load_run

    run = load_run(args.run_dir)
    path = _picture_out(args, f"top-{args.layer}.png")
    data = None
    if args.data:
        data = load_dataset(args.data, None, run.spec.input, run.config.seed)
    result = top_activations(run, args.layer, k=args.k, data=data, device=args.device or "auto")
    save_top_activations_png(result, path, filters=_filter_list(args.filters))
    h, w = result.receptive_field
    console.print(
        f"{args.layer}: {len(result.filters)} filters, {result.images_scanned:,} images scanned, "
        f"receptive field {h}×{w} → {path}"
    )


def cmd_gradcam(args: argparse.Namespace, console: Console) -> None:
    from convscope.inspect.gradcam import gradcam_for_run, save_gradcam_png

    # Each choice that was given goes into the default name, so maps of other classes, layers or methods do not
    # overwrite one another.
    chosen = [
        part for part in (args.class_name, args.layer, None if args.method == "hirescam" else args.method) if part
    ]
    name = "-".join(["gradcam", Path(args.image).stem, *chosen])
    path = _picture_out(args, f"{name}.png")
    result = gradcam_for_run(
        args.run_dir, args.image, args.class_name, args.layer, args.method, device=args.device or "auto"
    )
    save_gradcam_png(result, result.image, path, title=f"{args.run_dir}, {Path(args.image).name}")
    console.print(f"{result.summary()} → {path}", markup=False)


def cmd_report(args: argparse.Namespace, console: Console) -> None:
    """report.html of either kind of run: a detector's has mAP, precision–recall curves and boxes."""
    from convscope.api.verbs import write_report

    console.print(f"report: {write_report(args.run_dir)}")
