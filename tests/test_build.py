import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from convscope import BatchNorm, Conv, DataError, Dense, Dropout, Flatten, GlobalPool, NetSpec, Pool, SpecError, infer
from convscope.builder import build
from convscope.presets import get_preset, preset_names
from convscope.shapes import out_size

pairs = st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3)))
paddings = st.one_of(st.sampled_from(["valid", "same"]), st.integers(0, 1))


@st.composite
def specs(draw):
    """Random whole specs that can run: window layers on maps, then a head on the flat vector."""
    shape = (draw(st.integers(4, 20)), draw(st.integers(4, 20)), draw(st.integers(1, 3)))
    h, w = shape[:2]
    layers = []
    for _ in range(draw(st.integers(1, 4))):
        size, stride, padding = draw(pairs), draw(pairs), draw(paddings)
        (kh, kw), (sh, sw) = _pair(size), _pair(stride)
        ho, wo = out_size(h, kh, sh, padding), out_size(w, kw, sw, padding)
        if min(ho, wo) < 1:
            break
        if draw(st.booleans()):
            layers.append(Conv(draw(st.integers(1, 4)), size, stride, padding, draw(st.sampled_from(["relu", "none"]))))
        elif isinstance(padding, str) or padding < min(kh, kw):  # a pool window may not lie wholly in padding
            layers.append(Pool(draw(st.sampled_from(["max", "min", "avg"])), size, stride, padding))
        else:
            continue
        h, w = ho, wo
        if draw(st.booleans()):
            layers.append(draw(st.sampled_from([BatchNorm(), Dropout(0.1)])))
    layers.append(draw(st.sampled_from([Flatten(), GlobalPool("max"), GlobalPool("avg")])))
    layers.append(Dense(draw(st.integers(1, 5))))
    return NetSpec(input=shape, layers=layers)


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


@settings(max_examples=60)
@given(spec=specs(), channels_last=st.booleans())
def test_infer_equals_real_torch_shapes_and_params(spec, channels_last):
    """The pure-Python linter and the real model agree on every layer's output shape and the parameter count."""
    report = infer(spec)
    model = build(spec).eval()
    h, w, c = spec.input
    x = torch.randn(2, c, h, w)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    y, shapes = _layer_outputs(model, x)
    assert [_hwc(s) for s in shapes] == [info.output_shape for info in report.layers]
    assert sum(p.numel() for p in model.parameters()) == report.params
    assert torch.isfinite(y).all()


def _layer_outputs(model, x):
    shapes = []
    for child in model.children():
        x = child(x)
        shapes.append(tuple(x.shape[1:]))
    return x, shapes


def _hwc(shape):
    """torch C×H×W -> H×W×C, flat vectors unchanged."""
    return (shape[1], shape[2], shape[0]) if len(shape) == 3 else shape


@pytest.mark.parametrize("name", preset_names())
def test_presets_build_with_the_names_and_params_of_the_summary(name):
    spec = get_preset(name)
    model, report = build(spec), infer(spec)
    assert [n for n, _ in model.named_children()] == [info.name for info in report.layers]
    assert sum(p.numel() for p in model.parameters()) == report.params
    h, w, c = spec.input
    _, shapes = _layer_outputs(model.eval(), torch.zeros(2, c, h, w))
    assert [_hwc(s) for s in shapes] == [info.output_shape for info in report.layers]


def test_state_dict_keys_carry_layer_names():
    keys = set(build(get_preset("cifar-3conv")).state_dict())
    assert keys == {f"{n}.{p}" for n in ("conv1", "conv2", "conv3", "dense1", "dense2") for p in ("weight", "bias")}


def test_wrong_input_is_a_clear_error():
    model = build(get_preset("cifar-3conv"))
    with pytest.raises(DataError, match=r"cifar-3conv: expects images of 32×32×3 \(a tensor N×3×32×32\)"):
        model(torch.zeros(1, 1, 28, 28))


def test_specs_that_cannot_run_are_refused_before_building():
    with pytest.raises(SpecError, match="layer 2 \\(dense 10\\)"):
        build(NetSpec(input="8x8x1", layers=[Conv(4), Dense(10)]))


def test_forward_intermediates_are_the_exact_layer_outputs():
    torch.manual_seed(0)
    model = build(get_preset("cifar-3conv")).eval()
    x = torch.randn(2, 3, 32, 32)
    out, maps = model.forward_intermediates(x, ["conv1", "pool2"])
    assert set(maps) == {"conv1", "pool2"}
    assert torch.equal(out, model(x))
    assert torch.equal(maps["conv1"], model.conv1(x))
    assert torch.equal(maps["pool2"], model[:4](x))
    with pytest.raises(DataError, match="no layer named 'conv9'"):
        model.forward_intermediates(x, ["conv9"])


def test_build_takes_a_preset_name_or_a_spec_file(tmp_path):
    assert build("lenet5").spec == get_preset("lenet5")
    (tmp_path / "net.yaml").write_text(get_preset("lenet5").to_yaml())
    assert build(tmp_path / "net.yaml").spec.layers == get_preset("lenet5").layers
    with pytest.raises(SpecError, match="'nope' is neither a spec file nor a preset. Presets: cifar-3conv"):
        build("nope")
    with pytest.raises(SpecError, match="build expects a NetSpec, a preset name or a spec file. Received: int"):
        build(3)
