"""The Train page's spec, written or pasted as text: read and checked by the shape linter (`convscope summary`'s:
shapes.infer) as the user types, each problem on the line of the text it comes from.

The text is read exactly as `convscope train --model FILE.yaml` reads the file (yamlfile's bounds, NetSpec.from_dict,
shapes.infer), so what the page calls sound is what the child process trains. Pure Python, no torch: a lint of a
spec of a few hundred layers takes milliseconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from convscope.errors import SpecError
from convscope.shapes import ShapeReport, infer
from convscope.spec import NetSpec
from convscope.summary import COLUMNS, summary_rows, totals_lines
from convscope.yamlfile import compose_yaml, safe_load, yaml_error

WHERE = "spec"  # the text's name in messages: 'spec, line 7: layer 3 (conv 5×5 …): …'


@dataclass(frozen=True)
class Linted:
    """What the linter found in a spec's text: the spec and its shapes, or the first problem and its line."""

    spec: NetSpec | None
    report: ShapeReport | None
    line: int | None  # 1-based line of the problem (None: sound, or no line to point at)
    problem: str  # '' when sound
    text: str = ""  # the text linted (the layers' lines in to_dict)

    def message(self) -> str:
        """The problem as one line that names the line: 'spec, line 7: layer 3 (…): …'."""
        return f"{WHERE}, line {self.line}: {self.problem}" if self.line else f"{WHERE}: {self.problem}"

    def to_dict(self) -> dict[str, Any]:
        """The page's answer: the problem with its line, or the summary table (COLUMNS, one row per layer, the
        input first) and its totals."""
        if self.report is None:
            return {"ok": False, "errors": [{"line": self.line, "message": self.problem}], "name": None}
        return {
            "ok": True,
            "errors": [],
            "name": self.spec.name,
            "columns": [header for header, _ in COLUMNS],
            "rows": [list(row) for row in summary_rows(self.report)],
            "lines": [None, *(layer_lines(self.text) or [])][: len(self.report.layers) + 1],
            "totals": totals_lines(self.report),
            "params": self.report.params,
            "output": list(self.report.output_shape),
        }


def lint(text: str) -> Linted:
    """Read and check `text` as a spec file; never raises for what the text holds."""
    try:
        data = safe_load(text)
    except yaml.YAMLError as err:
        # An unclosed { or [ is noticed lines later: its opening line is where to look.
        unclosed = "flow" in str(getattr(err, "context", "") or "") and getattr(err, "context_mark", None)
        mark = unclosed or getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        problem = str(yaml_error(err, WHERE, SpecError, "YAML")).split(": ", 1)[-1]
        return Linted(None, None, mark.line + 1 if mark is not None else None, problem, text)
    try:
        spec = NetSpec.from_dict(data)
        report = infer(spec)
    except SpecError as err:
        return Linted(None, None, _line(text, err), str(err).removeprefix(f"{WHERE}: "), text)
    return Linted(spec, report, None, "", text)


def _line(text: str, err: SpecError) -> int | None:
    """The line a SpecError points at: its layer's, else that of the key it names ('input', 'name'), else None."""
    if err.layer:
        lines = layer_lines(text)
        if lines and err.layer <= len(lines):
            return lines[err.layer - 1]
    # A problem of the whole spec names its key first ('input must be …', 'spec: layers must be …') or is an
    # unknown key ('spec: unknown key 'inputs' …'): that key's line. A missing key has no line.
    found = re.match(r"(?:spec: )?(?:(\w+) must be|unknown key '([^']+)')", str(err))
    key = (found.group(1) or found.group(2)) if found else None
    return _key_lines(text).get(key) if key else None


def _key_lines(text: str) -> dict[str, int]:
    root = compose_yaml(text)
    if not isinstance(root, yaml.MappingNode):
        return {}
    return {str(key.value): key.start_mark.line + 1 for key, _ in root.value}


def layer_lines(text: str) -> list[int] | None:
    """The 1-based line where each layer of the text's `layers` list starts; None when the text has no such list."""
    root = compose_yaml(text)
    for key, value in root.value if isinstance(root, yaml.MappingNode) else []:
        if key.value == "layers" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return None
