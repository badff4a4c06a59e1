"""`convscope detect ...`: make the fashion-scenes dataset, lint labels, train, evaluate and predict with a detector."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from convscope.cli_args import float_in, int_in
from convscope.errors import ConvscopeError, DataError
from convscope.training.config import PRECISIONS

# What the README's fashion-scenes measurement used (about 14 minutes of training on 2 cores).
TRAIN_DEFAULTS = {"model": "scenes-det", "epochs": 30, "batch_size": 32, "lr": 0.008}


LINT_EXIT = """exit status: 0 when no problems were found (notes, such as polygon rows read as boxes, alone
still give 0), 1 when problems were found (listed on stdout, their summary on stderr), 2 when the dataset cannot be
read at all (no data.yaml, bad YAML, a missing split folder) or for a usage mistake."""


class LintProblems(ConvscopeError):
    """`convscope detect lint` found label problems: the CLI prints the summary as one line and exits 1."""

    exit_code = 1


def add_parsers(sub, console: Console) -> None:
    p = sub.add_parser("detect", help="object detection: make-scenes, lint, train, evaluate, predict")
    dsub = p.add_subparsers(dest="detect_command", required=True, metavar="ACTION")

    g = dsub.add_parser("make-scenes", help="write the fashion-scenes dataset (Fashion-MNIST items on backgrounds)")
    g.add_argument("--out", required=True, metavar="DIR")
    g.add_argument("--n", type=int_in(1, 10_000_000), default=5000, help="scenes, split 80/10/10 (default 5000)")
    g.add_argument("--seed", type=int_in(0, 2**32 - 1), default=0)
    g.add_argument("--size", type=int_in(16, 4096), default=128, help="square canvas side in pixels (default 128)")
    g.add_argument("--data-dir", help="folder of the Fashion-MNIST files (default: the system copy)")
    g.set_defaults(run=lambda args: cmd_make_scenes(args, console))

    g = dsub.add_parser(
        "lint",
        help="check a YOLO dataset's labels: per file and line, then a summary; exit 1 when problems were found",
        description="Check every label row of a YOLO dataset (and decode every image) without training. Each "
        "problem is one line, file and line first.",
        epilog=LINT_EXIT,
    )
    g.add_argument("data", metavar="DIR", help="a YOLO dataset folder (with data.yaml)")
    g.set_defaults(run=lambda args: cmd_lint(args, console))

    g = dsub.add_parser("train", help="train a detector (default scenes-det) on a YOLO folder or COCO JSON")
    g.add_argument("--data", required=True, help="a YOLO dataset folder or a COCO .json")
    g.add_argument("--data-dir", help="COCO: the folder of its images (default: images/ beside the JSON)")
    g.add_argument("--model", help="preset or spec file ending in a detect layer (default scenes-det)")
    g.add_argument("--epochs", type=int, help="default 30")
    g.add_argument("--batch-size", type=int, help="default 32")
    g.add_argument("--lr", type=float, help="peak learning rate (default 0.008)")
    g.add_argument("--precision", choices=PRECISIONS, help="bf16: much faster on CPUs with AMX (default fp32)")
    g.add_argument("--seed", type=int)
    g.add_argument("--threads", type=int)
    g.add_argument("--augment", help="flip,scale (default) or none")
    g.add_argument("--val-fraction", type=float)
    g.add_argument("--patience", type=int)
    g.add_argument("--out", help="run folder")
    g.set_defaults(run=lambda args: cmd_detect_train(args, console))

    g = dsub.add_parser("evaluate", help="COCO mAP@0.5 and mAP@0.5:0.95 per class, and pr_curves.png")
    g.add_argument("run_dir", metavar="RUN")
    g.add_argument("--data", help="another dataset (same classes)")
    g.add_argument("--json", action="store_true")
    g.set_defaults(run=lambda args: cmd_detect_evaluate(args, console))

    g = dsub.add_parser("predict", help="boxes, labels and scores for images; a PNG with the boxes drawn per image")
    g.add_argument("run_dir", metavar="RUN")
    g.add_argument("images", nargs="+", metavar="IMAGE|DIR")
    g.add_argument("--min-score", type=float_in(0, 1), default=0.3)
    g.add_argument("--out", metavar="DIR", help="where the PNGs go (default RUN/detections)")
    g.add_argument("--json", action="store_true")
    g.set_defaults(run=lambda args: cmd_detect_predict(args, console))


def cmd_make_scenes(args: argparse.Namespace, console: Console) -> None:
    from convscope.detect.scenes import make_scenes

    path = make_scenes(args.out, args.n, seed=args.seed, size=args.size, data_dir=args.data_dir)
    console.print(f"fashion-scenes: {args.n:,} scenes of {args.size}×{args.size} in {path}; train with "
                  f"convscope detect train --data {path}")  # fmt: skip


def cmd_lint(args: argparse.Namespace, console: Console) -> None:
    from convscope.detect.data import lint_summary
    from convscope.detect.yolo import lint_yolo

    found = lint_yolo(args.data)
    problems = [problem for problem in found if not problem.is_note]
    for problem in problems:
        console.print(str(problem), markup=False, highlight=False)
    for note in (problem for problem in found if problem.is_note):
        console.print(f"note: {note}", markup=False, highlight=False)
    if problems:  # the summary goes to stderr as the CLI's one line, with exit status 1
        raise LintProblems(f"{len(problems)} label problem(s): {lint_summary(problems)}")
    console.print("no problems found")


def cmd_detect_train(args: argparse.Namespace, console: Console) -> None:
    from convscope.cli_train import _print_result
    from convscope.progress import ProgressBar
    from convscope.training.loop import train

    keys = ("data", "data_dir", "model", "epochs", "batch_size", "lr", "precision", "seed", "threads", "augment")
    given = {k: getattr(args, k) for k in (*keys, "val_fraction", "patience", "out") if getattr(args, k) is not None}
    bar = ProgressBar(console)
    try:
        run = train(**{**TRAIN_DEFAULTS, **given}, callbacks=[bar], stop=args.stop)
    finally:
        bar.close()
    _print_result(run, console)


def cmd_detect_evaluate(args: argparse.Namespace, console: Console) -> None:
    from convscope.detect.predict import evaluate_detector

    metrics = evaluate_detector(args.run_dir, args.data)
    if args.json:
        print(json.dumps(metrics.to_dict(), indent=2))
        return
    console.print(f"mAP@0.5 {metrics.map50:.3f}  mAP@0.5:0.95 {metrics.map50_95:.3f}")
    table = Table("class", "AP@0.5", "AP@0.5:0.95")
    for name in metrics.class_names:
        table.add_row(name, _ap(metrics.per_class_ap50[name]), _ap(metrics.per_class_ap50_95[name]))
    console.print(table)


def _ap(value: float) -> str:
    return "–" if value != value else f"{value:.3f}"  # nan: the class has no test box


def cmd_detect_predict(args: argparse.Namespace, console: Console) -> None:
    from pathlib import Path

    from convscope.detect.predict import detect_images

    out = Path(args.out) if args.out else Path(args.run_dir) / "detections"
    results = detect_images(args.run_dir, args.images, args.min_score, out)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        for r in results:
            if r.error:
                console.print(f"{r.path}: cannot read: {r.error}", markup=False)
                continue
            found = ", ".join(f"{label} {s:.2f}" for label, s in zip(r.labels, r.scores, strict=True)) or "nothing"
            console.print(f"{r.path} ({r.conversion}): {found} → {r.picture}", markup=False, highlight=False)
    if results and all(r.error for r in results):
        raise DataError(f"none of the {len(results)} images could be read")
