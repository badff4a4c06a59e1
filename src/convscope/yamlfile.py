"""Every YAML file convscope reads goes through here: PyYAML's SafeLoader with bounds, so a small hostile file is
refused in one short line before it can cost memory or blow the stack.

Two tricks a 1 KB file can play on a plain `yaml.safe_load`:
  aliases   `&a [x, x, …]`, `&b [*a, *a, …]`, … : PyYAML shares the aliased objects, so loading is cheap, but every
            consumer that walks the result (validation, an error message that shows the value) sees 9⁹ items
  nesting   `[[[[…]]]]` thousands deep: the composer recurses once per level (RecursionError)

Bounds (a spec, a training config, a run's config.yaml or a YOLO data.yaml needs far less):
  MAX_DEPTH   100 levels of nesting   (real files nest ≤ 6; Python's recursion limit of 1000 is never approached)
  MAX_NODES   100,000 nodes with every alias expanded   (a spec of 1,000 layers is ~10,000; a data.yaml naming
              ImageNet-21k's 21,841 classes ~22,000; walking 100,000 nodes takes milliseconds)
  MAX_BYTES   16 MiB of text   (the files above are kilobytes)
An alias of a node that contains it (a recursive structure, which no consumer could walk) is refused too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from convscope.errors import ConvscopeError
from convscope.files import check_regular_file
from convscope.userfiles import read_at_most

MAX_DEPTH = 100
MAX_NODES = 100_000
MAX_BYTES = 16 * 2**20
_PROBLEM_CHARS = 120  # a parser's problem text is short; cut it anyway so a message stays one short line


class _Refused(yaml.MarkedYAMLError):
    """A document past a bound; a MarkedYAMLError, so code that reports PyYAML's errors reports this one too."""

    def __init__(self, problem: str, mark):
        super().__init__(problem=problem, problem_mark=mark)


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts, while composing, the nesting depth and the nodes with every alias expanded."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._expanded = 0  # nodes of this document so far, each alias counted as the whole node it stands for
        self._sizes: dict[int, int] = {}  # id(node) -> its expanded size, once its composition is finished

    def compose_document(self):
        self._depth, self._expanded, self._sizes = 0, 0, {}
        return super().compose_document()

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None:  # an undefined alias is PyYAML's own error
                size = self._sizes.get(id(target))
                if size is None:
                    raise _Refused(f"with alias *{_cut(event.anchor, 40)} inside the node it names", event.start_mark)
                self._add(size, event)
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
        before = self._expanded
        self._add(1, event)
        node = super().compose_node(parent, index)
        self._depth -= 1
        self._sizes[id(node)] = self._expanded - before  # the tree keeps `node` alive, so its id stays its own
        return node

    def _add(self, nodes: int, event) -> None:
        self._expanded += nodes
        if self._expanded > MAX_NODES:
            raise _Refused(f"with more than {MAX_NODES:,} values once its aliases are expanded", event.start_mark)

    def _int(self, node):
        """An int past Python's 4,300-digit conversion limit is a marked YAML error, not a ValueError."""
        try:
            return self.construct_yaml_int(node)
        except ValueError:
            raise _Refused(f"with an integer of {len(node.value):,} digits", node.start_mark) from None


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader._int)


def _cut(text: str, limit: int) -> str:
    text = " ".join(str(text).split())  # one line
    return text if len(text) <= limit else text[: limit - 1] + "…"


def yaml_error(err: yaml.YAMLError, where: str, error: type[ConvscopeError], kind: str = "YAML") -> ConvscopeError:
    """PyYAML's error (or a bound's) as `error`, one line: 'WHERE, line 3: not valid YAML (…)' or 'WHERE, line 6:
    refused: YAML with more than 100,000 values once its aliases are expanded'."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    place = f"{where}, line {mark.line + 1}" if mark is not None else where
    if isinstance(err, _Refused):
        return error(f"{place}: refused: {kind} {err.problem}")
    parts = [getattr(err, "context", None), getattr(err, "problem", None)]
    problem = ": ".join(p for p in parts if p) or type(err).__name__
    return error(f"{place}: not valid {kind} ({_cut(problem, _PROBLEM_CHARS)})")


def load_yaml(text: str, where: str, error: type[ConvscopeError] = ConvscopeError, kind: str = "YAML") -> Any:
    """The Python value of one YAML document `text` (None for an empty one), read within the bounds above.

    where: the file's name for messages. Raises `error` (one short line that names `where` and the line, never
    the document): "data.yaml, line 3: not valid YAML (…)" or "spec.yaml, line 4: refused: YAML nested more than
    100 levels deep". `kind` names the language in messages ('YAML/JSON' for specs).
    """
    try:
        return safe_load(text)
    except yaml.YAMLError as err:
        raise yaml_error(err, where, error, kind) from None


def safe_load(text: str) -> Any:
    """A bounded drop-in for `yaml.safe_load`: past a bound it raises a yaml.MarkedYAMLError (problem, line)."""
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def compose_yaml(text: str) -> yaml.Node | None:
    """The node tree of `text` (with line marks), within the same bounds; None when it is not valid or refused."""
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_node()
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()


def read_text(path: str | Path, error: type[ConvscopeError] = ConvscopeError, what: str = "file") -> str:
    """The UTF-8 text of `path`, refused without reading when larger than MAX_BYTES.

    Raises `error` naming the path: "no such {what}", "… is 20.0 MiB, more than the 16 MiB a {what} may be",
    "expected UTF-8 text, found binary data", "cannot read (reason)".
    """
    path = check_regular_file(path, what, error)  # stat only: a named pipe would block the read forever
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise error(
                f"{path}: refused: {size / 2**20:.1f} MiB, more than the {MAX_BYTES // 2**20} MiB a {what} may be"
            )
        with path.open("rb") as f:
            data = read_at_most(f, size, MAX_BYTES)  # a file that grows (or says size 0, as in /proc) costs no more
        if len(data) > MAX_BYTES:
            raise error(f"{path}: refused: more than the {MAX_BYTES // 2**20} MiB a {what} may be")
        return data.decode("utf-8")
    except FileNotFoundError:
        raise error(f"{path}: no such {what}") from None
    except UnicodeDecodeError:
        raise error(f"{path}: expected UTF-8 text, found binary data") from None
    except OSError as err:
        raise error(f"{path}: cannot read ({err.strerror or err})") from None


def read_yaml(
    path: str | Path, error: type[ConvscopeError] = ConvscopeError, what: str = "file", kind: str = "YAML"
) -> Any:
    """`read_text` then `load_yaml`: the value of the YAML file at `path`; every failure is `error`, one line."""
    return load_yaml(read_text(path, error, what), str(path), error, kind)
