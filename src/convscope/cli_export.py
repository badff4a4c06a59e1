"""`convscope export RUN`: the run's network as an ONNX or TorchScript file, checked against PyTorch."""

from __future__ import annotations

import argparse

from rich.console import Console


def add_parsers(sub, console: Console) -> None:
    p = sub.add_parser(
        "export",
        help="write a run's network as ONNX or TorchScript (checked against PyTorch), with model.json beside it",
        description="The exported model takes float32 N×C×H×W images normalised with the run's mean and std (in "
        "model.json) and returns logits (a detector: its raw heatmap/size/offset maps). "
        "Run an ONNX export with `convscope predict MODEL.onnx IMAGES...`.",
    )
    p.add_argument("run_dir", metavar="RUN")
    p.add_argument("--format", default="onnx", choices=["onnx", "torchscript"], help="default onnx")
    p.add_argument(
        "--out",
        metavar="FILE",
        help="a file, or a folder to hold model.onnx (model.pt), made when missing (a name without a suffix is a "
        "folder); default RUN/export/model.onnx",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing FILE that no export wrote")
    p.set_defaults(run=lambda args: cmd_export(args, console))


def cmd_export(args: argparse.Namespace, console: Console) -> None:
    from convscope.export import TOLERANCE, export
    from convscope.summary import human_bytes

    out = None
    if args.out is not None:  # a folder holds export's own file name; anything else that is not a file is refused here
        from pathlib import Path

        from convscope.export import FORMATS
        from convscope.out_paths import out_file, run_folder_above

        # export itself refuses a file it did not make (its model.json says which) and a path inside a run folder
        # other than the run's own export/ (another run's included), with its own words: left to it here
        name = f"model{FORMATS[args.format]}"
        out = out_file(args.out, name, overwrite=True, run_names=("*",), own_run=run_folder_above(Path(args.out, name)))
    result = export(args.run_dir, args.format, out, overwrite=args.overwrite)
    size = human_bytes(result.size, significant=3)
    console.print(f"wrote {result.path} ({size}, {result.format}) and {result.sidecar.name}")
    console.print(f"max abs diff vs eager: {result.max_abs_diff:.3g} (allowed {TOLERANCE:g})")
