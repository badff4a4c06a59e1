"""Every YAML convscope reads is bounded (convscope.yamlfile): nesting, expanded aliases, integer length, file size.
A hostile file is refused in one short line that names the file and line, with flat memory."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from convscope.config import TrainConfig
from convscope.data.detection.yolo import load_yolo
from convscope.errors import CheckpointError, ConfigError, ConvscopeError, DataError, SpecError
from convscope.run import load_run
from convscope.spec import load_spec
from convscope.yamlfile import MAX_DEPTH, MAX_NODES, load_yaml, read_yaml, safe_load

CASES = (Path(__file__).resolve().parents[1] / "../shared/cases/specs").resolve()
needs_cases = pytest.mark.skipif(not CASES.is_dir(), reason=f"{CASES} (the shared case files) is not here")

# 9 strings, then 8 levels of 9 aliases each: 9⁹ = 387,420,489 strings once expanded, in under 1 KB. Counting keys
# and sequences, level f (line 6) passes 100,000 values: 12 + 92 + 821 + 7,382 + 66,431 + 597,872.
LAUGHS = (
    "a: &a ["
    + ",".join(['"lol"'] * 9)
    + "]\n"
    + "".join(f"{b}: &{b} [" + ",".join([f"*{a}"] * 9) + "]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True))
)


def one_line(err: Exception) -> str:
    text = str(err)
    assert "\n" not in text and len(text) < 300, text[:500]
    return text


def test_ordinary_yaml_and_aliases_still_load():
    assert load_yaml("a: &x [1, 2]\nb: *x\nc: {<<: {k: 1}, j: 2}\n", "w.yaml") == {
        "a": [1, 2],
        "b": [1, 2],
        "c": {"k": 1, "j": 2},
    }
    assert load_yaml("", "empty.yaml") is None


def test_nesting_is_bounded_at_exactly_max_depth():
    ok = "[" * (MAX_DEPTH - 1) + "1" + "]" * (MAX_DEPTH - 1)  # 99 sequences + the scalar: 100 levels
    value = load_yaml(ok, "ok.yaml")
    for _ in range(MAX_DEPTH - 1):
        value = value[0]
    assert value == 1
    with pytest.raises(SpecError) as err:
        load_yaml("x:\n  y: " + "[" * 5000 + "]" * 5000, "deep.yaml", SpecError)
    assert one_line(err.value) == "deep.yaml, line 2: refused: YAML nested more than 100 levels deep"


def test_expanded_aliases_are_counted_exactly():
    # 1 root sequence + (1 + 9) for &a + 9 998 aliases of it at 10 values each: 100 000 values, the bound itself.
    fits = "[&a [" + ",".join(["0"] * 9) + "]," + ",".join(["*a"] * 9_998) + "]"
    assert len(load_yaml(fits, "fits.yaml")) == 9_999
    with pytest.raises(ConvscopeError) as err:
        load_yaml(fits[:-1] + ",*a]", "over.yaml")  # one alias more: 100 010
    assert one_line(err.value) == (
        f"over.yaml, line 1: refused: YAML with more than {MAX_NODES:,} values once its aliases are expanded"
    )


def test_the_billion_laughs_is_refused_with_flat_memory():
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError) as err:
            load_yaml(LAUGHS, "laughs.yaml", ConfigError)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert one_line(err.value).startswith("laughs.yaml, line 6: refused: YAML with more than 100,000 values")
    assert peak < 2 * 2**20  # bytes; the expanded document would be gigabytes


def test_a_recursive_alias_and_a_huge_integer_are_refused():
    with pytest.raises(ConvscopeError) as err:
        load_yaml("a: &x [1, *x]", "loop.yaml")
    assert one_line(err.value) == "loop.yaml, line 1: refused: YAML with alias *x inside the node it names"
    with pytest.raises(ConvscopeError) as err:
        load_yaml("seed: " + "9" * 5000, "seed.yaml")
    assert one_line(err.value) == "seed.yaml, line 1: refused: YAML with an integer of 5,000 digits"


def test_syntax_errors_are_one_line_with_the_line():
    with pytest.raises(ConvscopeError) as err:
        load_yaml("a: 1\nb: [1, 2\n", "bad.yaml")
    assert one_line(err.value).startswith("bad.yaml, line 3: not valid YAML (while parsing a flow sequence")


def test_a_file_too_large_is_refused_before_it_is_read(tmp_path):
    big = tmp_path / "big.yaml"
    with big.open("wb") as f:
        f.truncate(17 * 2**20)  # sparse: no 17 MiB written
    with pytest.raises(ConfigError) as err:
        read_yaml(big, ConfigError, "config file")
    assert one_line(err.value) == f"{big}: refused: 17.0 MiB, more than the 16 MiB a config file may be"
    with pytest.raises(ConfigError, match="no such config file"):
        read_yaml(tmp_path / "none.yaml", ConfigError, "config file")


def test_the_drop_in_safe_load_raises_a_marked_yaml_error():
    import yaml

    with pytest.raises(yaml.MarkedYAMLError) as err:
        safe_load(LAUGHS)
    assert err.value.problem_mark.line == 5 and "100,000 values" in err.value.problem


def test_every_reader_of_yaml_is_bounded(tmp_path):
    (tmp_path / "train.yaml").write_text(LAUGHS)
    with pytest.raises(ConfigError) as err:
        TrainConfig.load(tmp_path / "train.yaml")
    assert "train.yaml, line 6: refused" in one_line(err.value)

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("train:\n  epochs: " + "[" * 500 + "]" * 500)
    with pytest.raises(CheckpointError) as err:
        load_run(run)
    assert one_line(err.value) == f"{run / 'config.yaml'}, line 2: refused: YAML nested more than 100 levels deep"

    data = tmp_path / "yolo"
    data.mkdir()
    (data / "data.yaml").write_text(LAUGHS + "names: *i\n")
    with pytest.raises(DataError) as err:
        load_yolo(data, 64)
    assert one_line(err.value) == (
        f"{data / 'data.yaml'}, line 6: refused: YAML with more than 100,000 values once its aliases are expanded"
    )


@needs_cases
def test_the_shared_case_files_are_refused_by_load_spec():
    tracemalloc.start()
    try:
        with pytest.raises(SpecError) as err:
            load_spec(CASES / "laughs_layers.yaml")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert one_line(err.value) == (
        f"{CASES / 'laughs_layers.yaml'}, line 3: refused: YAML/JSON with more than 100,000 values once its "
        "aliases are expanded"
    )
    assert peak < 2 * 2**20
    with pytest.raises(SpecError) as err:
        load_spec(CASES / "deepnest.yaml")
    assert (
        one_line(err.value) == f"{CASES / 'deepnest.yaml'}, line 3: refused: YAML/JSON nested more than 100 levels deep"
    )


def test_spec_messages_show_a_short_part_of_a_large_value(tmp_path):
    path = tmp_path / "net.yaml"
    path.write_text("input: 8x8x1\ndescription: [" + ",".join(["word"] * 5000) + "]\nlayers: [flatten]\n")
    with pytest.raises(SpecError) as err:
        load_spec(path)
    shown = "['word', 'word', 'word', 'word', 'word', 'word', 'word', 'word', 'word', 'word'…"  # 79 characters + …
    assert one_line(err.value) == f"{path}: spec: description must be text. Received: {shown}"


def test_no_module_reads_yaml_around_the_bounds():
    src = Path(__file__).resolve().parents[1] / "src" / "convscope"
    direct = ("yaml.safe_load(", "yaml.load(", "yaml.full_load(", "yaml.unsafe_load(", "yaml.compose(", "yaml.Loader")
    found = [
        f"{path.relative_to(src)}: {call}"
        for path in src.rglob("*.py")
        if path.name != "yamlfile.py"
        for call in direct
        if call in path.read_text(encoding="utf-8")
    ]
    assert found == []


def test_a_yolo_data_yaml_nested_past_the_bound_is_refused_naming_it(tmp_path):
    # The mapping is the first level and a scalar a level too: 1 + 100 lists is 101 levels, 1 + 98 + 1 is 100.
    (tmp_path / "data.yaml").write_text("train: images\nnames: " + "[" * 100 + "]" * 100 + "\n")
    with pytest.raises(DataError) as err:
        load_yolo(tmp_path, 64)
    assert one_line(err.value) == f"{tmp_path / 'data.yaml'}, line 2: refused: YAML nested more than 100 levels deep"
    (tmp_path / "data.yaml").write_text("train: images\nnames: " + "[" * 98 + "cat" + "]" * 98 + "\n")
    with pytest.raises(DataError) as err:
        load_yolo(tmp_path, 64)  # read: what stops it is the names
    assert one_line(err.value).startswith(f"{tmp_path / 'data.yaml'}: names: expected strings, found [[")
