"""`convscope doctor DATA`: what is wrong with a data set, before it costs a training (convscope.diagnosis)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console

from convscope.cli_args import int_in
from convscope.errors import DataError, LintProblems

ABOUT = (
    "Examine a data set — an image-class folder (with or without train/ val/ test/), a built-in name, or a detection "
    "data set in any layout `convscope detect lint` reads — and report: files that cannot be read (truncated, zero "
    "bytes, not an image, decompression bombs, link loops, no permission); exact and near duplicates within a split "
    "and across splits (a leak); image sizes, modes, EXIF rotations and near-blank images; images (and boxes) per "
    "class and split; and, with --run, labels that a trained network confidently disagrees with. Each file is read "
    "once; nothing is modified. Writes OUT/report.html (galleries of each finding) and OUT/doctor.json."
)
EXIT = (
    "exit status: 0 nothing serious found (warnings only), 1 problems found (unreadable files, leaks, a class "
    "missing from a split, suspicious labels), 2 the data set cannot be read at all, or the run does not fit it"
)


def add_parsers(sub, console: Console) -> None:
    p = sub.add_parser(
        "doctor", help="find what is wrong with a data set before training on it", description=ABOUT, epilog=EXIT
    )
    p.add_argument("data", metavar="DATA", help="image folder, built-in name (cifar10, …) or detection data set")
    p.add_argument(
        "--run", dest="run_dir", metavar="RUN", help="a trained run folder: its predictions judge the labels"
    )
    p.add_argument("--data-dir", metavar="DIR", help="a COCO JSON's image folder, or a built-in data set's folder")
    p.add_argument("--out", metavar="DIR", help="folder for report.html and doctor.json (default doctor/NAME)")
    p.add_argument(
        "--examples",
        type=int_in(0, 1_000_000),
        default=5,
        metavar="N",
        help="images listed per finding on the terminal (default 5; report.html shows up to 24, doctor.json all)",
    )
    p.add_argument("--json", action="store_true", help="print the whole diagnosis as JSON instead of the summary")
    p.set_defaults(run=lambda args: cmd_doctor(args, console))


def cmd_doctor(args: argparse.Namespace, console: Console) -> None:
    from convscope.diagnosis.doctor import check_out, diagnose
    from convscope.diagnosis.report import write_report
    from convscope.out_paths import out_folder

    out = Path(args.out or Path("doctor") / _name(args.data))
    check_out(out, args.data)
    out = out_folder(str(out))  # refused before any work when not writable
    try:
        diagnosis = _with_progress(
            lambda progress: diagnose(args.data, args.run_dir, args.data_dir, progress), console, quiet=args.json
        )
    except DataError as err:
        if args.json:
            print(json.dumps({"error": str(err)}, ensure_ascii=False))
        raise
    write_report(diagnosis, out)
    if args.json:
        print(json.dumps(diagnosis.as_dict(), indent=2, ensure_ascii=False))
    else:
        for line in diagnosis.lines(examples=args.examples):
            console.print(line, markup=False, highlight=False)
        console.print(f"report: {out / 'report.html'}", markup=False, highlight=False)
    if diagnosis.exit_code:
        raise LintProblems(f"{len(diagnosis.problems)} problem(s) found in {args.data}")


def _name(data: str) -> str:
    path = Path(data)
    return (path.resolve().name if path.exists() else data) or "data"


def _with_progress(work, console: Console, quiet: bool):
    """work(progress) with a rich bar per stage on the terminal (none with --json or when output is not a terminal)."""
    if quiet or not console.is_terminal:
        return work(None)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bars: dict[str, int] = {}
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as shown:

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in bars:
                bars[stage] = shown.add_task(stage, total=total)
            shown.update(bars[stage], completed=done, total=total)

        return work(progress)
