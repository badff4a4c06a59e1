"""Ground floor for reading what users hand convscope (JSON, label text, class lists): bounded, linear in the file's
size, and refused in one line that names the file.

Bounds (real files are far below them; past one, the file is refused before it is parsed):
  MAX_TEXT_BYTES   16 MiB for a text or JSON file (label files, class lists, a run's JSON are kilobytes);
                   a COCO annotations JSON may be MAX_JSON_BYTES, 2 GiB (COCO 2017's train JSON is 448 MiB)
  MAX_LINE_CHARS   100,000 characters in one line of a text file (a YOLO polygon row of 10,000 points is ~90,000)
  MAX_DEPTH        100 levels of JSON nesting (COCO nests 4; Python's json recurses once per level and ends in a
                   RecursionError near 1,000). The depth is measured BEFORE `json.loads`, by a NumPy scan of the
                   brackets outside strings: a few seconds per GiB, where `json.loads` takes half a minute.

Text is read as editors save it: UTF-8 (a byte-order mark dropped) or UTF-16 with its BOM (Windows Notepad's
"Unicode"). Only a regular file is opened: a named pipe would block the read forever, a device never ends.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import stat
import sys
from pathlib import Path
from typing import Any

import numpy as np

from convscope.errors import ConvscopeError, DataError

MAX_TEXT_BYTES = 16 * 2**20
MAX_JSON_BYTES = 2 * 2**30
MAX_LINE_CHARS = 100_000
MAX_DEPTH = 100
_CHUNK = 8 * 2**20  # bytes scanned at a time: the scan's temporary arrays stay a few times this
_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_OPENING = np.frombuffer(b"[{", np.uint8)


class JsonTooDeep(ValueError):
    """JSON nested past the bound (a ValueError, as json.JSONDecodeError is): 'line N: refused: JSON nested more
    than 100 levels'. `line`: 1-based line of the bracket that went past it."""

    def __init__(self, line: int, max_depth: int):
        super().__init__(f"line {line}: refused: JSON nested more than {max_depth} levels")
        self.line = line


class JsonNumberTooLong(ValueError):
    """A JSON integer past Python's int-to-str limit (sys.get_int_max_str_digits(), 4,300 digits by default), which
    json.loads would raise as a bare ValueError: 'line N: refused: a number of more than 4300 digits'."""

    def __init__(self, line: int | None, limit: int):
        where = f"line {line}: " if line is not None else ""
        super().__init__(f"{where}refused: a number of more than {limit} digits")
        self.line = line


def _size(count: int) -> str:
    return f"{count / 2**20:.1f} MiB" if count >= 2**20 else f"{count:,} bytes"


def read_bytes(
    path: str | os.PathLike, *, max_bytes: int = MAX_TEXT_BYTES, what: str = "file", error=DataError
) -> bytes:
    """The bytes of the regular file `path`, at most `max_bytes` of them (the read stops one byte past the bound, so
    a file that grows or lies about its size costs no more). Raises `error` (a ConvscopeError subclass) in one line
    naming the path: no such file, not a regular file, cannot read (reason), refused: larger than the bound."""
    path = Path(path)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{path}: not a regular file (a folder, named pipe, device or socket); expected a {what}")
        if info.st_size > max_bytes:
            raise error(f"{path}: refused: {_size(info.st_size)}, more than the {_size(max_bytes)} a {what} may be")
        with open(path, "rb") as f:
            data = read_at_most(f, info.st_size, max_bytes)
    except (FileNotFoundError, NotADirectoryError):
        raise error(f"{path}: no such {what}") from None
    except OSError as err:
        raise error(f"{path}: cannot read ({err.strerror or err})") from None
    except ValueError as err:  # an embedded NUL byte in the name
        raise error(f"{path!r}: not a usable file name ({err})") from None
    if len(data) > max_bytes:
        raise error(f"{path}: refused: more than the {_size(max_bytes)} a {what} may be")
    return data


def read_at_most(f, size: int, limit: int) -> bytes:
    """What is left of the open binary file `f`, or its first limit + 1 bytes when there is more than `limit`.

    size: what stat said the file holds. A read of n bytes sets aside n bytes before it reads, so a bound of 2 GiB is
    never asked for at once: `size` + 1 first, and more only when the file turns out longer (it grew, or the file
    system does not know its size, as in /proc)."""
    data = f.read(min(size, limit) + 1)
    while len(data) <= limit and (more := f.read(min(limit + 1 - len(data), 2**20))):
        data += more
    return data


def decode_text(data: bytes) -> str:
    """UTF-8 (a BOM dropped) or UTF-16 with its BOM, as a str; UnicodeDecodeError for anything else."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")  # the BOM says the byte order and is dropped
    return data.decode("utf-8-sig")


def long_line(text: str, max_chars: int = MAX_LINE_CHARS) -> tuple[int, int] | None:
    """(1-based line number, length) of the first line of `text` longer than `max_chars` characters, else None."""
    if len(text) <= max_chars:
        return None
    for number, line in enumerate(text.splitlines(), start=1):
        if len(line) > max_chars:
            return number, len(line)
    return None


def read_text(
    path: str | os.PathLike,
    *,
    max_bytes: int = MAX_TEXT_BYTES,
    max_line: int | None = MAX_LINE_CHARS,
    what: str = "text file",
    error=DataError,
) -> str:
    """The text of `path` (module docstring: encodings), within the size and line-length bounds. Raises `error` in
    one line naming the path (read_bytes' reasons, 'expected UTF-8 text, found binary data', 'line N: refused: a line
    of … characters'); line ends stay as they are."""
    data = read_bytes(path, max_bytes=max_bytes, what=what, error=error)
    try:
        text = decode_text(data)
    except UnicodeDecodeError:
        raise error(f"{path}: expected UTF-8 text, found binary data") from None
    if max_line is not None and (found := long_line(text, max_line)):
        raise error(
            f"{path}, line {found[0]}: refused: a line of {found[1]:,} characters, more than the {max_line:,} "
            f"a {what} may have"
        )
    return text


def json_depth(data: bytes | str, max_depth: int = MAX_DEPTH) -> None:
    """Raise JsonTooDeep when JSON `data` nests brackets more than `max_depth` deep (strings skipped, escapes
    honoured), without parsing it: linear, in chunks of _CHUNK bytes. For text that is not JSON the answer only
    matters up to where a parser would stop, and up to there the scan reads the text as the parser does."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raw = decode_text(raw).encode("utf-8", "surrogatepass")  # UTF-16 bytes hold '[' inside other characters
    in_string, depth, slashes, lines = False, 0, 0, 0  # carried from one chunk to the next
    for start in range(0, len(raw), _CHUNK):
        chunk = np.frombuffer(raw, np.uint8, min(_CHUNK, len(raw) - start), start)
        folded = chunk | 0x20  # [ and { both become {, ] and } both }
        at = np.flatnonzero((chunk == _QUOTE) | (folded == ord("{")) | (folded == ord("}")))  # quotes, brackets
        kinds = chunk[at]
        quotes = kinds == _QUOTE
        before = at[quotes] - 1  # a quote right after a backslash may be escaped
        slashed = chunk[np.maximum(before, 0)] == _BACKSLASH
        slashed[before < 0] = slashes > 0
        if slashed.any():
            quotes[np.flatnonzero(quotes)[slashed]] = _even_runs(chunk, before[slashed], slashes)
        # The parity of the unescaped quotes so far: odd inside a string.
        inside = (np.cumsum(quotes, dtype=np.int32) + in_string) & 1
        brackets = (kinds != _QUOTE) & (inside == 0)
        step = np.where(np.isin(kinds[brackets], _OPENING), 1, -1)
        if step.size:
            levels = depth + np.cumsum(step, dtype=np.int64)
            if levels.max() > max_depth:
                where = int(at[brackets][np.argmax(levels > max_depth)])
                line = lines + int(np.count_nonzero(chunk[:where] == ord("\n"))) + 1
                raise JsonTooDeep(line, max_depth)
            depth = int(levels[-1])
        if inside.size:
            in_string = bool(inside[-1])
        if chunk[-1] != _BACKSLASH:
            slashes = 0
        else:  # the backslashes that end the chunk escape what starts the next one
            others = np.flatnonzero(chunk != _BACKSLASH)
            slashes = len(chunk) - 1 - int(others[-1]) if others.size else slashes + len(chunk)
        lines += int(np.count_nonzero(chunk == ord("\n")))


def _even_runs(chunk: np.ndarray, ends: np.ndarray, carried: int) -> np.ndarray:
    """For each index in `ends` (the last of a run of backslashes in `chunk`, or -1 for the `carried` ones that end
    the previous chunk), whether the run has an even length, so that the quote after it is not escaped."""
    slashes = np.flatnonzero(chunk == _BACKSLASH)
    if not slashes.size:
        return np.full(len(ends), carried % 2 == 0)
    starts = np.ones(len(slashes), bool)  # a backslash not right after another starts a run
    starts[1:] = np.diff(slashes) != 1
    first = np.maximum.accumulate(np.where(starts, np.arange(len(slashes)), 0))  # index of its run's first
    index = np.minimum(np.searchsorted(slashes, ends), len(slashes) - 1)  # each end among the backslashes
    length = index - first[index] + 1
    length = length + np.where(slashes[first[index]] == 0, carried, 0)  # a run at the start continues the carried
    return np.where(ends >= 0, length, carried) % 2 == 0


def parse_json(data: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads` after the depth check. Raises JsonTooDeep, JsonNumberTooLong or json.JSONDecodeError (all
    ValueErrors), or UnicodeDecodeError for bytes that are not text."""
    json_depth(data, max_depth)
    if isinstance(data, bytes | bytearray) and data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        data = decode_text(bytes(data))
    try:
        return json.loads(data)
    except RecursionError:  # not reached within the bound; kept so that no traceback can escape
        raise JsonTooDeep(1, max_depth) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise
    except ValueError as err:  # int() past its limit: found again (the error says not where) to name its line
        limit = sys.get_int_max_str_digits()
        if not limit or "integer string conversion" not in str(err):
            raise
        raise JsonNumberTooLong(_line_of(data, limit), limit) from None


def _line_of(data: bytes | bytearray | str, limit: int) -> int | None:
    """1-based line of the first run of more than `limit` digits in JSON `data`; None when there is none (UTF-32,
    or UTF-16 bytes json.loads decoded itself). A number is only searched after json.loads refused one, so the
    usual read costs nothing; the run found may be inside a string before the number (the line is then earlier)."""
    if isinstance(data, str):
        found = re.search(f"[0-9]{{{limit + 1}}}", data)
        return None if found is None else data.count("\n", 0, found.start()) + 1
    found = re.search(f"[0-9]{{{limit + 1}}}".encode(), data)
    return None if found is None else data.count(b"\n", 0, found.start()) + 1


def load_json(data: bytes | str, where: str, error: type[ConvscopeError] = DataError, what: str = "JSON") -> Any:
    """The value of JSON `data`; every failure is `error`, one line naming `where`: 'WHERE, line 3: not valid JSON
    (Expecting value)', 'WHERE, line 1: refused: JSON nested more than 100 levels', 'WHERE, line 2: refused: a
    number of more than 4300 digits', 'WHERE: expected UTF-8 JSON, found binary data'."""
    try:
        return parse_json(data)
    except (JsonTooDeep, JsonNumberTooLong) as err:
        raise error(f"{where}, {err}" if err.line is not None else f"{where}: {err}") from None
    except json.JSONDecodeError as err:
        raise error(f"{where}, line {err.lineno}: not valid {what} ({err.msg})") from None
    except UnicodeDecodeError:
        raise error(f"{where}: expected UTF-8 {what}, found binary data") from None


def read_json(
    path: str | os.PathLike, *, max_bytes: int = MAX_TEXT_BYTES, what: str = "JSON file", error=DataError
) -> Any:
    """`read_bytes` then `load_json`: the value of the JSON file at `path`; every failure is `error`, one line."""
    return load_json(read_bytes(path, max_bytes=max_bytes, what=what, error=error), str(path), error)
