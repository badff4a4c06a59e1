import json

import pytest
import yaml

from convscope import Conv, Dense, Dropout, Flatten, GlobalPool, NetSpec, Pool, SpecError, load_spec
from convscope.presets import get_preset, preset_names


def test_pair_settings_are_normalised_and_written_back_compactly():
    conv = Conv(8, size=(3, 5), stride=2, padding=1)
    assert conv.size == (3, 5) and conv.stride == (2, 2) and conv.padding == (1, 1)
    assert Pool("min").stride == (2, 2)  # stride defaults to the window size
    spec = NetSpec(input="9x9x1", layers=[conv])
    assert spec.to_dict()["layers"][0] == {
        "conv": {"filters": 8, "size": [3, 5], "stride": 2, "padding": 1, "activation": "relu", "bias": True}
    }


@pytest.mark.parametrize("name", preset_names())
def test_presets_round_trip_through_dict_yaml_and_json(name):
    spec = get_preset(name)
    assert NetSpec.from_dict(spec.to_dict()) == spec
    assert NetSpec.from_dict(yaml.safe_load(spec.to_yaml())) == spec
    assert NetSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_every_layer_kind_round_trips():
    spec = NetSpec(
        input=(16, 12, 3),
        layers=[
            Conv(4, 3, padding="same", activation="none", bias=False, name="stem"),
            Pool("avg", size=3, stride=(1, 2), padding=(1, 0)),
            Dropout(0.25),
            Conv(6, (1, 3), stride=(2, 1), activation="gelu"),
            GlobalPool("min"),
            Dense(5, activation="relu"),
            Flatten(),
        ],
        name="all-kinds",
        description="every layer kind",
    )
    assert NetSpec.from_dict(spec.to_dict()) == spec
    assert spec.layer_names() == ("stem", "pool1", "dropout1", "conv2", "global_pool1", "dense1", "flatten1")


def test_bare_words_and_json_files_load(tmp_path):
    path = tmp_path / "net.json"
    path.write_text(json.dumps({"input": [28, 28, 1], "layers": [{"conv": {"filters": 4}}, "flatten", "batchnorm"]}))
    spec = load_spec(path)
    assert spec.input == (28, 28, 1)
    assert [layer.layer_type for layer in spec.layers] == ["conv", "flatten", "batchnorm"]


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ({"conv": {"filters": -1}}, "layer 2 (conv): filters must be a positive integer. Received: -1"),
        ({"conv": {"filters": 8.0}}, "layer 2 (conv): filters must be a positive integer. Received: 8.0"),
        ({"conv": {"filters": True}}, "layer 2 (conv): filters must be a positive integer. Received: True"),
        ({"conv": {"filter": 8}}, "layer 2 (conv): unknown key 'filter' (did you mean 'filters'?)"),
        ({"conv": {"size": 3}}, "layer 2 (conv): 'filters' is missing"),
        ({"conv": {"filters": 8, "padding": "full"}}, "padding must be 'valid', 'same', an integer >= 0"),
        ({"conv": {"filters": 8, "stride": 0}}, "layer 2 (conv): stride must be a positive integer"),
        ({"conv": {"filters": 8, "size": [3, 3, 3]}}, "size must be a positive integer or a pair [h, w]"),
        ({"pool": {"kind": "median"}}, "layer 2 (pool): kind must be one of max, avg, min. Received: 'median'"),
        ({"dropout": {"rate": 1.0}}, "layer 2 (dropout): rate must be a number in [0, 1). Received: 1.0"),
        ({"dense": {"units": 10, "activation": "softplus"}}, "activation must be one of relu"),
        ({"convolution": {"filters": 8}}, "layer 2: unknown layer kind 'convolution'"),
        ([1, 2], "layer 2: expected one mapping like"),
    ],
)
def test_bad_values_name_layer_key_expected_and_received(layer, message):
    data = {"input": "32x32x3", "layers": [{"conv": {"filters": 4}}, layer]}
    with pytest.raises(SpecError) as err:
        NetSpec.from_dict(data)
    assert message in str(err.value)
    assert err.value.layer == 2


def test_spec_file_errors_name_the_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\ninput: 32x32x3\nlayers:\n  - conv: {filters: 8}\n  - pool: {kind: mean}\n")
    with pytest.raises(SpecError, match=r"bad\.yaml, line 5: layer 2 \(pool\): kind must be one of"):
        load_spec(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("input: 32x32\nlayers: [flatten]\n", "input must be H×W×C"),
        ("layers: [flatten]\n", "'input' is missing"),
        ("input: 8x8x1\nlayers: []\n", "at least one layer"),
        ("input: 8x8x1\nlayer: [flatten]\n", "unknown key 'layer' (did you mean 'layers'?)"),
        ("input: 8x8x1\nlayers: [flatten\n", "not valid YAML/JSON"),
        ("input: 8x8x1\nlayers:\n  - conv: {filters: 2, name: a}\n  - conv: {filters: 2, name: a}\n", "already used"),
    ],
)
def test_whole_spec_errors(tmp_path, text, message):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_missing_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "nope.yaml")


def test_python_construction_errors_name_the_kind():
    with pytest.raises(SpecError, match=r"^conv: size must be a positive integer"):
        Conv(8, size=0)
