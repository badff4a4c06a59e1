"""`convscope detect ...`: make the fashion-scenes dataset, lint and convert labelled datasets (YOLO, Pascal VOC,
COCO), train, evaluate and predict with a detector."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from convscope.cli_args import add_config_flags, add_device_flag, add_process_flags, config_settings, float_in, int_in
from convscope.errors import DataError, LintProblems
from convscope.recipes import RECIPES
from convscope.run import DETECTIONS

LINT_EXIT = """exit status: 0 when no problems were found (notes, such as polygon rows read as boxes or VOC boxes
clipped to the image, and the summary's warnings alone still give 0), 1 when problems were found (listed on stdout,
their summary on stderr; an image in two splits is one), 2 when the dataset cannot be read at all (no data.yaml, bad
YAML, a missing split folder, no VOC XML files, a COCO JSON that is not one, a folder of COCO JSONs without a train
JSON) or for a usage mistake."""

CONVERT_ABOUT = """Formats: yolo (data.yaml, images/ and labels/ per split), coco (SPLIT.json per split, images in
images/SPLIT/), voc (Annotations/, JPEGImages/, ImageSets/Main/), voc-folders (train/ val/ test/, each image's XML
beside it), coco-folders (Roboflow's COCO export: train/ valid/ test/, each with _annotations.coco.json and its
images) and csv (the TensorFlow Object Detection CSV, as Roboflow exports it: SPLIT/_annotations.csv beside the
images, classes.txt). Boxes stay in the images' own pixels (VOC's whole pixels: within half a pixel), classes keep
their order, splits are kept, images are copied unchanged. Rows the lint drops are not written (`convscope detect lint
SRC` lists them). YOLO and the CSV have no ignore regions: COCO crowds and VOC difficult objects are left out when
converting to them. OUT must be new or empty; a failure leaves nothing there."""


# What every DATA and --data of `detect` reads, and what --data-dir is for: the same words in each command's help.
DATA_LAYOUTS = (
    "a YOLO folder (with data.yaml), a Pascal VOC folder, a COCO .json, a TF Object Detection .csv, or a folder of "
    "split folders (train/ valid/ test/) or of split files (train.json …, train.csv …)"
)
DATA_DIR_HELP = (
    "a COCO .json or TF .csv: the folder of its images (default: images/ beside it, or the file's own folder)"
)

# `detect convert --to`: the keys of the format table (data.detection.formats.FORMATS, which a test compares), named
# here so that the CLI starts without importing the readers.
CONVERT_TO = ("yolo", "coco", "voc", "voc-folders", "coco-folders", "csv")

# The settings `detect train` has flags for; the others come from the model's recipe, then TrainConfig's defaults.
DETECT_SETTINGS = ("data", "data_dir", "model", "epochs", "finetune_epochs", "unfreeze_blocks", "batch_size", "lr")
DETECT_SETTINGS += ("precision", "seed", "threads", "device", "cache_limit", "augment", "tta_flip", "val_fraction")
DETECT_SETTINGS += ("patience", "val_every", "sync_bn", "out")
DETECT_SETTINGS += ("ema_decay", "ema_tau", "giou_weight")  # better boxes on small sets (issue 28)
DETECT_SETTINGS += ("image_size", "from_data")  # chosen from the training data unless given (detect/data_recipe.py)


def _detect_help() -> dict[str, dict]:
    """`detect train`'s own words for its settings: detection data, and the defaults of the detectors' recipes."""
    from convscope.config import TrainConfig

    scenes, lite0 = RECIPES["scenes-det"], RECIPES["lite0-det"]

    def per_model(key: str) -> str:  # "scenes-det 32, lite0-det 16": a recipe's value, else TrainConfig's default
        default = getattr(TrainConfig, key)
        return f"scenes-det {scenes.get(key, default)}, lite0-det {lite0.get(key, default)}"

    return {
        "data": {
            "required": True,
            "help": f"{DATA_LAYOUTS}; `detect lint DATA` shows what is read",
        },
        "data_dir": {"help": DATA_DIR_HELP},
        "model": {
            "help": "preset (scenes-det, the default; lite0-det: a pretrained EfficientNet-Lite0 base) or spec file "
            "ending in a detect layer; unset settings come from the model's recipe"
        },
        "epochs": {
            "help": f"with a base: the epochs with it frozen (default: the model's recipe; {per_model('epochs')})"
        },
        "batch_size": {"help": f"default: the model's recipe ({per_model('batch_size')})"},
        "lr": {"help": f"peak learning rate (recipe: {scenes['lr']:g}; fine-tuning uses a tenth)"},
        "precision": {
            "help": "bf16: much faster on CPUs with AMX or AVX512-BF16; auto: bf16 on those (default: the model's "
            f"recipe; {per_model('precision')})"
        },
        "augment": {"help": "flip,scale (default), color (HSV jitter) or none"},
        "tta_flip": {
            "help": "evaluate on each image and its mirror image, heatmaps and sizes averaged (default: when training "
            "flips)"
        },
        "val_every": {"help": f"validate every N epochs and at the end ({per_model('val_every')})"},
    }


def add_parsers(sub, console: Console) -> None:
    p = sub.add_parser("detect", help="object detection: make-scenes, lint, convert, train, evaluate, predict")
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
        help="what a dataset holds (YOLO, Pascal VOC, COCO, TF CSV), split by split, and its label problems per "
        "file and line; exit 1 when problems were found",
        description="Read every label of a YOLO dataset, a Pascal VOC folder, a COCO JSON, a TF Object Detection "
        "CSV or split folders of them (and decode every image) without training. First what was read: per split, "
        "images, boxes, boxes per class, images without boxes (and ignore regions), with warnings for a class with "
        "fewer than 20 training boxes or none in a split; then each problem on one line, file and line first. Images "
        "that two splits share (the same file, or the same bytes under another name) are problems: they inflate the "
        "score of the later split.",
        epilog=LINT_EXIT,
    )
    g.add_argument(
        "data",
        metavar="DATA",
        help=DATA_LAYOUTS,
    )
    g.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)
    g.add_argument(
        "--json",
        action="store_true",
        help="print {summary: {name, format, classes, splits: {SPLIT: {images, boxes, boxes_per_class, "
        "without_boxes, ignore, repeated}}, warnings, notes}, problems: [{path, line, kind, message}], notes: [...]}; "
        'a dataset that cannot be read: {"error": MESSAGE} (exit 2)',
    )
    g.set_defaults(run=lambda args: cmd_lint(args, console))

    g = dsub.add_parser(
        "convert",
        help="convert a detection dataset between YOLO, COCO, Pascal VOC and the TF CSV (splits kept, images copied)",
        description=CONVERT_ABOUT,
    )
    g.add_argument(
        "src",
        metavar="SRC",
        help=f"any dataset `detect lint` reads: {DATA_LAYOUTS}",
    )
    g.add_argument("--to", required=True, choices=CONVERT_TO, help="the format to write")
    g.add_argument("--out", required=True, metavar="DIR", help="a new or empty folder")
    g.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)
    g.add_argument("--seed", type=int_in(0, 2**32 - 1), default=0, help="VOC without ImageSets: the split's seed")
    g.add_argument(
        "--val-fraction",
        type=float_in(0, 0.45),
        default=0.1,
        help="VOC without ImageSets: share drawn for val, and as much for test (default 0.1)",
    )
    g.set_defaults(run=lambda args: cmd_convert(args, console))

    g = dsub.add_parser("train", help="train a detector (default scenes-det) on any dataset `detect lint` reads")
    add_config_flags(g, DETECT_SETTINGS, **_detect_help())
    add_process_flags(g)
    g.set_defaults(run=lambda args: cmd_detect_train(args, console))

    g = dsub.add_parser(
        "evaluate",
        help="COCO mAP@0.5 and mAP@0.5:0.95 per class, and pr_curves.png",
        description="Score a detection run's best weights with pycocotools on the test split of its data (its val "
        "split when it has none), or on --data: another dataset's test split, or the whole of a COCO JSON. The curves "
        "of the run's own data are RUN/pr_curves.png; another dataset's go to RUN/pr_curves-NAME.png (NAME: its "
        "folder or file name), and the run's own test results are left as they are.",
    )
    g.add_argument("run_dir", metavar="RUN")
    g.add_argument(
        "--data",
        help=f"another dataset with the same classes, its test split (a COCO .json: all of it): {DATA_LAYOUTS}",
    )
    g.add_argument("--data-dir", metavar="DIR", help=DATA_DIR_HELP)
    g.add_argument("--json", action="store_true")
    add_device_flag(g)
    g.set_defaults(run=lambda args: cmd_detect_evaluate(args, console))

    g = dsub.add_parser(
        "predict",
        help="boxes, labels and scores for images; a picture with the boxes drawn per image",
        description="Boxes are in each image's own pixels as it is displayed (EXIF orientation applied): x1, y1, x2, "
        "y2. One object can get boxes of two classes; a box overlapping a higher-scoring one of any class with IoU "
        ">= 0.7 is the same object, and is neither drawn nor listed (--all-classes lists it, marked not drawn). "
        "Pictures: NAME-detections.jpg for JPEG photos, NAME-detections.png otherwise; longer side at most 2000 px.",
    )
    g.add_argument("run_dir", metavar="RUN")
    g.add_argument("images", nargs="+", metavar="IMAGE|DIR")
    g.add_argument("--min-score", type=float_in(0, 1), default=0.3)
    g.add_argument("--out", metavar="DIR", help="where the pictures go (default RUN/detections)")
    g.add_argument(
        "--overwrite", action="store_true", help="replace a picture of the same name that convscope did not write"
    )
    g.add_argument(
        "--json",
        action="store_true",
        help="print a list of {image, size: [w, h], objects: [{label, score, box, drawn}], suppressed: how many "
        "boxes were left out as the same object, picture}",
    )
    g.add_argument(
        "--all-classes",
        action="store_true",
        help="also list the boxes of other classes on an object already boxed ('drawn': false, 'same_object_as': "
        "the index of the box drawn); the picture is the same",
    )
    add_device_flag(g)
    g.set_defaults(run=lambda args: cmd_detect_predict(args, console))


def cmd_make_scenes(args: argparse.Namespace, console: Console) -> None:
    from convscope.data.detection.scenes import make_scenes
    from convscope.out_paths import out_folder

    # a device, pipe, a path under a file, a read-only folder or one inside a run: refused before any scene is drawn
    out = out_folder(args.out, writes="detect make-scenes writes a dataset folder")
    path = make_scenes(out, args.n, seed=args.seed, size=args.size, data_dir=args.data_dir)
    console.print(f"fashion-scenes: {args.n:,} scenes of {args.size}×{args.size} in {path}; train with "
                  f"convscope detect train --data {path}")  # fmt: skip


def cmd_lint(args: argparse.Namespace, console: Console) -> None:
    from convscope.data.detection.boxes import lint_summary
    from convscope.data.detection.summary import lint_dataset

    # a DataError (exit 2) naming the formats when it is none of them, or when it cannot be read at all; with --json
    # stdout still gets a JSON document: {"error": the one-line message} (also on stderr, as every error is)
    try:
        summary, found = lint_dataset(args.data, args.data_dir)
    except DataError as err:
        if args.json:
            print(json.dumps({"error": str(err)}, ensure_ascii=False))
        raise
    problems = [problem for problem in found if not problem.is_note]
    if args.json:
        doc = {"summary": summary.as_dict(), "problems": [_problem(p) for p in problems]}
        print(json.dumps({**doc, "notes": [_problem(p) for p in found if p.is_note]}, indent=2, ensure_ascii=False))
    else:
        for line in summary.lines():
            console.print(line, markup=False, highlight=False)
        for problem in problems:
            console.print(str(problem), markup=False, highlight=False)
        for note in (problem for problem in found if problem.is_note):
            console.print(f"note: {note}", markup=False, highlight=False)
    if problems:  # the summary goes to stderr as the CLI's one line, with exit status 1
        raise LintProblems(f"{len(problems)} label problem(s): {lint_summary(problems)}")
    if not args.json:
        console.print("no problems found")


def _problem(problem) -> dict:
    return {"path": problem.path, "line": problem.line, "kind": problem.kind, "message": problem.message}


def cmd_convert(args: argparse.Namespace, console: Console) -> None:
    from convscope.data.detection.convert import convert
    from convscope.out_paths import out_folder

    out = out_folder(args.out)  # a device, a path under a file, a read-only folder or a run's: refused here
    summary = convert(args.src, args.to, out, args.data_dir, seed=args.seed, val_fraction=args.val_fraction)
    console.print(summary.line(), markup=False, highlight=False)


def cmd_detect_train(args: argparse.Namespace, console: Console) -> None:
    from convscope.cli_train import check_run_out, launched, show
    from convscope.config import TrainConfig
    from convscope.tasks.train import train

    given = config_settings(args)
    config = TrainConfig.from_dict({"model": "scenes-det", **given}, "flags")  # the model's recipe fills the rest
    check_run_out(config.out)
    if not launched(args, config):
        show(console, lambda callbacks: train(config, callbacks=callbacks, stop=args.stop), args.stop)


def cmd_detect_evaluate(args: argparse.Namespace, console: Console) -> None:
    """The metrics training saved (detection.json), or, for other data or other weights, new ones; the picture of
    their curves: RUN/pr_curves.png for the run's own data, RUN/pr_curves-NAME.png for another dataset's."""
    from convscope.api.verbs import detector_run
    from convscope.detect.evaluate import detection_of, pr_curves_path

    run = detector_run(args.run_dir)
    metrics = detection_of(run, args.data, args.data_dir, device=args.device or "auto")
    if args.json:
        print(json.dumps(metrics.to_dict(), indent=2))
        return
    console.print(f"mAP@0.5 {metrics.map50:.3f}  mAP@0.5:0.95 {metrics.map50_95:.3f} on {metrics.images:,} images")
    table = Table("class", "AP@0.5", "AP@0.5:0.95")
    for name in metrics.class_names:
        table.add_row(name, _ap(metrics.per_class_ap50[name]), _ap(metrics.per_class_ap50_95[name]))
    console.print(table)
    picture = pr_curves_path(run, args.data, args.data_dir)
    own = "" if run.trained_on(args.data, args.data_dir) else f" (on {args.data}; the run's own test results are kept)"
    console.print(f"precision–recall curves: {picture}{own}", markup=False, highlight=False)


def _ap(value: float) -> str:
    return "–" if value != value else f"{value:.3f}"  # nan: the class has no test box


def cmd_detect_predict(args: argparse.Namespace, console: Console) -> None:
    from pathlib import Path

    from convscope.api.verbs import detector_run
    from convscope.detect.predict import detect_images
    from convscope.out_paths import out_folder

    if args.out is None:
        out = Path(args.run_dir) / DETECTIONS
    else:  # in its own run, only RUN/detections; in another run, nothing
        in_run = (DETECTIONS, f"{DETECTIONS}/*")
        out = out_folder(args.out, in_run, own_run=args.run_dir, writes="detect predict writes a folder of pictures")
    run = detector_run(args.run_dir)  # a classifier's run is refused here, before any image is read
    results = detect_images(
        run,
        args.images,
        args.min_score,
        out,
        all_classes=args.all_classes,
        device=args.device or "auto",
        overwrite=args.overwrite,
    )
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        for r in results:
            for line in r.text_lines():
                console.print(line, markup=False, highlight=False)
    if results and all(r.error for r in results):
        raise DataError(f"none of the {len(results)} images could be read")
