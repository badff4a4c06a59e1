"""The `convscope` command: parse, call the API, format. Errors become one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from rich.console import Console

from convscope.errors import ConvscopeError, SpecError
from convscope.presets import get_preset, preset_names
from convscope.shapes import infer
from convscope.spec import NetSpec, load_spec, parse_shape
from convscope.summary import formula_lines, summary_table, totals_lines

EXIT_USAGE = 2


def _console() -> Console:
    # Not a terminal (a pipe, a file, CI): a fixed width so the tables never wrap differently between machines.
    return Console(highlight=False, width=None if sys.stdout.isatty() else 110)


def resolve_spec(name: str) -> NetSpec:
    """A spec file path or a preset name."""
    path = Path(name)
    if path.suffix.lower() in (".yaml", ".yml", ".json") or path.exists():
        return load_spec(path)
    if name in preset_names():
        return get_preset(name)
    raise SpecError(f"{name!r} is neither a spec file nor a preset. Presets: {', '.join(preset_names())}")


def cmd_summary(args: argparse.Namespace) -> None:
    spec = resolve_spec(args.spec)
    if args.input:
        spec = spec.with_input(parse_shape(args.input, "--input"))
    report = infer(spec)
    if args.json:
        print(json.dumps({"name": spec.name, **report.to_dict()}, indent=2, ensure_ascii=False))
        return
    console = _console()
    title = f"{spec.name}" + (f" — {spec.description}" if spec.description else "")
    console.print(summary_table(report, title))
    for line in totals_lines(report):
        console.print(line)
    console.print("How each spatial size came out (out = ⌊(in + padding − size)/stride⌋ + 1):")
    for line in formula_lines(report):
        console.print("  " + line)


def cmd_presets(args: argparse.Namespace) -> None:
    for name in preset_names():
        spec = get_preset(name)
        report = infer(spec)
        h, w, c = spec.input
        print(f"{name:<14} {h}×{w}×{c}  {report.params:>9,} params  {spec.description}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convscope", description="Build convnets from their building blocks and see what they compute."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the library does")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("summary", help="layer-by-layer output shapes, params, MACs and receptive fields")
    p.add_argument("spec", metavar="SPEC_FILE|PRESET")
    p.add_argument("--input", metavar="H×W×C", help="input shape, e.g. 28x28x1 (default: the spec's own)")
    p.add_argument("--json", action="store_true", help="print the same data as JSON")
    p.set_defaults(run=cmd_summary)

    p = sub.add_parser("presets", help="list the built-in networks")
    p.set_defaults(run=cmd_presets)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        args.run(args)
    except ConvscopeError as err:
        print(f"convscope: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("convscope: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
