"""convscope.userfiles: every bound (size, line length, JSON nesting) at and past its value, each refusal one line
that names the file; the depth scan reads strings and escapes as a JSON parser does."""

import json
from pathlib import Path

import pytest

from convscope import userfiles
from convscope.errors import CheckpointError, DataError
from convscope.userfiles import (
    MAX_DEPTH,
    JsonNumberTooLong,
    JsonTooDeep,
    json_depth,
    load_json,
    read_bytes,
    read_json,
    read_text,
)


def _nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def one_line(err) -> str:
    text = str(err)
    assert "\n" not in text
    return text


def test_depth_100_loads_and_101_is_refused_before_parsing(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text('{"a":\n' + _nested(MAX_DEPTH - 1) + "}")  # the object is the first level: 100 in all
    value, depth = read_json(path)["a"], 1
    while value:
        value, depth = value[0], depth + 1
    assert depth == MAX_DEPTH - 1 and value == []
    path.write_text('{"a":\n' + _nested(MAX_DEPTH) + "}")  # 101
    with pytest.raises(DataError) as err:
        read_json(path)
    assert one_line(err.value) == f"{path}, line 2: refused: JSON nested more than 100 levels"


def test_thousands_of_levels_give_one_line_not_a_recursion_error(tmp_path):
    path = tmp_path / "instances.json"
    path.write_text("[" * 5000)
    with pytest.raises(DataError, match=r"instances\.json, line 1: refused: JSON nested more than 100 levels$"):
        read_json(path)


@pytest.mark.parametrize(
    "text, depth",
    [
        ('["[[[[", {"k": "}}}"}]', 2),  # brackets inside strings do not count
        ('["a\\"[[[", 1]', 1),  # an escaped quote does not end the string
        ('["a\\\\", [[1]]]', 3),  # an escaped backslash does: the brackets after it count
        ('["\\\\\\"[", [2]]', 2),  # three backslashes: the last escapes the quote
        ('{"a": {"b": {"c": [1, 2, {"d": null}]}}}', 5),
    ],
)
def test_the_scan_reads_strings_and_escapes_as_json_does(text, depth):
    json.loads(text)  # valid JSON
    json_depth(text, depth)
    with pytest.raises(JsonTooDeep):
        json_depth(text, depth - 1)


def test_the_scan_carries_strings_and_backslashes_across_chunks(monkeypatch):
    text = json.dumps({"x\\": ['\\\\"[[[', [[1]], "]]\\"], "y": [[[["\\"]]]]})
    for chunk in range(1, 12):
        monkeypatch.setattr(userfiles, "_CHUNK", chunk)
        json_depth(text, 5)
        with pytest.raises(JsonTooDeep):
            json_depth(text, 4)


def test_utf16_json_is_scanned_and_read(tmp_path):
    path = tmp_path / "notepad.json"
    path.write_bytes('{"name": "ś[["}'.encode("utf-16"))  # ś is 0x5B 0x01 in UTF-16LE: a '[' byte
    assert read_json(path) == {"name": "ś[["}


def test_bad_json_and_binary_data_are_one_line_naming_the_file(tmp_path):
    with pytest.raises(CheckpointError) as err:
        load_json("{\n  1", "results.json", CheckpointError)
    assert (
        one_line(err.value)
        == "results.json, line 2: not valid JSON (Expecting property name enclosed in double quotes)"
    )
    with pytest.raises(DataError, match=r"^x\.json: expected UTF-8 JSON, found binary data$"):
        load_json(b"\xff\xfe\xfd\x00\x81", "x.json")


def test_a_json_integer_at_the_digit_limit_is_read_and_one_past_it_is_one_line(tmp_path):
    text = '{"a": "%s",\n "b": [1,\n  %s]}'  # digits in a string before the number are not a number
    doc = userfiles.parse_json(text % ("7" * 50_000, "9" * 4300))
    assert doc["b"][1] == 10**4300 - 1
    for data in (text % ("7" * 10, "9" * 4301), (text % ("7" * 10, "9" * 50_000)).encode()):
        with pytest.raises(JsonNumberTooLong) as err:
            userfiles.parse_json(data)
        assert (str(err.value), err.value.line) == ("line 3: refused: a number of more than 4300 digits", 3)
    path = tmp_path / "big.json"
    path.write_text("[1.5, -%s]" % ("1" * 5000))
    with pytest.raises(DataError) as err:
        read_json(path)
    assert one_line(err.value) == f"{path}, line 1: refused: a number of more than 4300 digits"
    assert userfiles.parse_json("[1e400, %s.5]" % ("1" * 5000))[0] == float("inf")  # floats have no digit limit


def test_size_at_and_past_the_bound(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("x" * 10)
    assert read_bytes(path, max_bytes=10) == b"x" * 10
    path.write_text("x" * 11)
    with pytest.raises(DataError) as err:
        read_text(path, max_bytes=10, what="label file")
    assert one_line(err.value) == f"{path}: refused: 11 bytes, more than the 10 bytes a label file may be"


def test_a_text_file_past_16_mib_is_refused_without_reading_it(tmp_path):
    path = tmp_path / "big.txt"
    with open(path, "wb") as f:
        f.truncate(17 * 2**20)  # sparse: nothing written
    with pytest.raises(DataError, match=r"big\.txt: refused: 17\.0 MiB, more than the 16\.0 MiB a text file may be$"):
        read_text(path)


def test_line_length_at_and_past_the_bound(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_text("cat\n" + "d" * 100_000 + "\n")
    assert read_text(path).splitlines()[1] == "d" * 100_000
    path.write_text("cat\n" + "d" * 100_001 + "\n")
    with pytest.raises(DataError) as err:
        read_text(path, what="class list")
    assert one_line(err.value) == (
        f"{path}, line 2: refused: a line of 100,001 characters, more than the 100,000 a class list may have"
    )


def test_what_is_not_a_regular_file_is_never_opened(tmp_path):
    with pytest.raises(DataError, match=r"^.*: not a regular file \(a folder, named pipe, device or socket\)"):
        read_text(tmp_path)
    with pytest.raises(DataError, match=r"gone\.json: no such JSON file$"):
        read_json(tmp_path / "gone.json")


def test_text_is_read_as_editors_save_it(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes("\ufeffcat\r\ndog\r\n".encode())
    assert read_text(path) == "cat\r\ndog\r\n"
    path.write_bytes("cat\ndog\n".encode("utf-16"))
    assert read_text(path) == "cat\ndog\n"


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs /proc, whose files say size 0")
def test_a_file_that_says_size_0_is_still_bounded():
    assert b"Name:" in read_bytes("/proc/self/status")
    with pytest.raises(DataError, match=r"^/proc/self/status: refused: more than the 10 bytes a file may be$"):
        read_bytes("/proc/self/status", max_bytes=10)


def test_a_runs_damaged_results_and_evaluation_are_one_line(tmp_path):
    from convscope.run import EVALUATION, RESULTS, Run, read_evaluation, write_evaluation

    run = Run(tmp_path, None, None, None)  # results() and the evaluation read only the folder
    (tmp_path / RESULTS).write_text('{"test_acc": ' + _nested(MAX_DEPTH) + "}")
    with pytest.raises(CheckpointError) as err:
        run.results()
    assert one_line(err.value) == (
        f"{tmp_path / RESULTS}: damaged results (line 1: refused: JSON nested more than 100 levels)"
    )
    (tmp_path / RESULTS).write_text('{"test_acc": ' + _nested(MAX_DEPTH - 1) + "}")
    assert list(run.results()) == ["test_acc"]
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "best.safetensors").write_bytes(b"weights")  # the evaluation is stamped with their hash
    write_evaluation(run, EVALUATION, {"accuracy": 0.5})
    assert read_evaluation(run, EVALUATION) == {"accuracy": 0.5}
    (tmp_path / EVALUATION).write_text("[" * 5000)
    with pytest.raises(CheckpointError) as err:
        read_evaluation(run, EVALUATION)
    assert one_line(err.value) == (
        f"{tmp_path / EVALUATION}: damaged evaluation (line 1: refused: JSON nested more than 100 levels)"
    )


def test_a_runs_metrics_are_read_within_the_bounds(tmp_path):
    from convscope.run import METRICS, Run

    run = Run(tmp_path, None, None, None)
    (tmp_path / METRICS).write_text("epoch,train_loss\n1,0.5\n2,0.25\n")
    assert run.metrics() == [{"epoch": 1.0, "train_loss": 0.5}, {"epoch": 2.0, "train_loss": 0.25}]
    (tmp_path / METRICS).write_text("epoch,train_loss\n1," + "9" * 200_000 + "\n")
    with pytest.raises(CheckpointError) as err:
        run.metrics()
    assert one_line(err.value) == (
        f"{tmp_path / METRICS}, line 2: refused: a line of 200,002 characters, more than the 100,000 a metrics.csv "
        "may have"
    )


def test_cifar_class_names_are_read_within_a_bound(tmp_path):
    from convscope.data.cifar import _read_names

    path = tmp_path / "batches.meta.txt"
    path.write_text("cat\ndog\n\n")
    assert _read_names(path, 2) == ("cat", "dog")
    with open(path, "wb") as f:
        f.truncate(2 * 2**20)
    with pytest.raises(DataError) as err:
        _read_names(path, 2)
    assert one_line(err.value) == (f"{path}: refused: 2.0 MiB, more than the 1.0 MiB a text file of class names may be")
    path.write_bytes(b"\x80\x81 cat")
    with pytest.raises(DataError, match=r"batches\.meta\.txt: expected UTF-8 text, found binary data$"):
        _read_names(path, 1)
