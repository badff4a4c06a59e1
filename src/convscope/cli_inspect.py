"""CLI commands that look inside a trained run: featuremaps, filters, top-activations, gradcam, report."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console


def add_parsers(sub, console: Console) -> None:
    p = sub.add_parser("featuremaps", help="every response map of the chosen layers for one image, as PNG sheets")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("image", metavar="IMAGE", help="an image file or a sample photo name (chelsea, coffee, ...)")
    p.add_argument("--layer", action="append", help="a layer name (repeat for more; default: every conv and pool)")
    p.add_argument("--out", help="folder for the PNGs (default RUN/featuremaps)")
    p.set_defaults(run=lambda args: cmd_featuremaps(args, console))

    p = sub.add_parser("filters", help="a conv layer's filters as pictures (default: the first conv layer)")
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--layer", help="a conv layer name")
    p.add_argument("--out", help="PNG file (default RUN/filters-LAYER.png)")
    p.set_defaults(run=lambda args: cmd_filters(args, console))


def cmd_featuremaps(args: argparse.Namespace, console: Console) -> None:
    from convscope.inspect.featuremaps import feature_maps, save_feature_map_sheets

    maps = feature_maps(args.run_dir, args.image, args.layer)
    out = Path(args.out) if args.out else Path(args.run_dir) / "featuremaps"
    paths = save_feature_map_sheets(maps, out)
    h, w, c = maps.image.shape
    console.print(f"input {h}×{w}×{c} ({maps.conversion})")
    for layer, path in zip(maps.layers, paths, strict=True):
        h, w, c = layer.shape
        low, high = float(layer.maps.min()), float(layer.maps.max())
        console.print(f"{layer.name:<12} {layer.label:<40} {h}×{w}×{c}  values {low:.3g} … {high:.3g}  → {path}")


def cmd_filters(args: argparse.Namespace, console: Console) -> None:
    from convscope.inspect.filters import filter_weights, save_filter_sheet

    weights = filter_weights(args.run_dir, args.layer)
    path = Path(args.out) if args.out else Path(args.run_dir) / f"filters-{weights.name}.png"
    save_filter_sheet(weights, path)
    console.print(
        f"{weights.name}: {weights.shape_text}, weights {weights.weights.min():.3g} … "
        f"{weights.weights.max():.3g} → {path}"
    )
