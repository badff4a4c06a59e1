"""torchvision and timm convnets as trunks: the cut, strict weights loading, names, and feature_info."""

from __future__ import annotations

import sys

import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn

from convscope.errors import CheckpointError, ConfigError
from convscope.pretrained.external import feature_info, timm_trunk, torchvision_trunk

tv = pytest.importorskip("torchvision").models


def seeded(name: str, seed: int = 0) -> nn.Module:
    """A torchvision model with seeded weights and batch-norm statistics (so loading them is visible), in eval."""
    torch.manual_seed(seed)
    model = tv.get_model(name, weights=None)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def save(tensors: dict[str, torch.Tensor], path) -> str:
    safetensors.torch.save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return str(path)


def image(size: int) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))


# ── torchvision ───────────────────────────────────────────────────────────────────────────────────────────────────
def test_resnet18_feature_info():
    trunk = torchvision_trunk("resnet18", None)
    assert feature_info(trunk, 224) == (512, 32, 11176512)  # 11689512 of the full model minus fc (512·1000 + 1000)
    # A size that is not a multiple of the stride: padded convolutions give ⌈225/32⌉ = 8.
    assert feature_info(trunk, 225) == (512, 32, 11176512)


def test_resnet18_trunk_is_torchvision_forward_up_to_avgpool(tmp_path):
    model = seeded("resnet18")
    trunk = torchvision_trunk("resnet18", save(model.state_dict(), tmp_path / "r18.safetensors"))
    x = image(64)
    with torch.no_grad():
        ref = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
            ref = layer(ref)
        out = trunk.forward(x)
    assert out.shape == (2, 512, 2, 2)
    assert torch.equal(out, ref)


def test_resnet18_blocks_in_order_and_classifier_gone():
    trunk = torchvision_trunk("resnet18", None)
    m = trunk.module
    assert [id(b) for b in trunk.blocks] == [id(m.layer1), id(m.layer2), id(m.layer3), id(m.layer4)]
    assert trunk.blocks[-1] is m.layer4  # the one nearest the output
    assert trunk.top == []
    keys = list(m.state_dict())
    assert keys[0] == "conv1.weight" and "layer4.1.bn2.running_var" in keys  # torchvision's own names
    assert not [k for k in keys if k.startswith(("fc.", "avgpool"))]
    assert not m.training


def test_mobilenet_v3_small_weights_file_reproduces_features(tmp_path):
    model = seeded("mobilenet_v3_small", seed=3)
    path = save(model.state_dict(), tmp_path / "mnv3.safetensors")
    trunk = torchvision_trunk("mobilenet_v3_small", path)
    x = image(64)
    with torch.no_grad():
        assert torch.equal(trunk.forward(x), model.features(x))
    feats = trunk.module.features
    assert trunk.top == [feats[-1]]  # the 1×1 head conv to 576 channels
    assert trunk.blocks[0] is feats[1] and trunk.blocks[-1] is feats[-2] and len(trunk.blocks) == 11
    assert not [k for k in trunk.module.state_dict() if k.startswith("classifier")]
    assert feature_info(trunk, 64) == (576, 32, 927008)


def test_efficientnet_b0_head_conv_is_top():
    trunk = torchvision_trunk("efficientnet_b0", None)
    assert feature_info(trunk, 64) == (1280, 32, 4007548)
    assert len(trunk.blocks) == 7 and trunk.top == [trunk.module.features[8]]
    assert trunk.top[0][0].out_channels == 1280


def test_densenet_applies_the_final_relu(monkeypatch):
    model = seeded("densenet121")
    monkeypatch.setattr(tv, "get_model", lambda name, weights: model)  # one densenet built, not two
    trunk = torchvision_trunk("densenet121", None)
    x = image(32)
    with torch.no_grad():
        assert torch.equal(trunk.forward(x), F.relu(model.features(x)))
    assert len(trunk.blocks) == 7  # 4 dense blocks and 3 transitions; the stem (conv0 … pool0) stays frozen


def test_plain_layer_lists_are_cut_at_convolutions():
    trunk = torchvision_trunk("squeezenet1_1", None)
    # every block has parameters: ReLUs and poolings ride along with the conv (or fire module) before them
    assert all(next(b.parameters(), None) is not None for b in trunk.blocks)
    assert len(trunk.blocks) == 8 and trunk.blocks[-1] is trunk.module.features[-1]


def test_output_not_at_a_whole_stride_is_refused():
    trunk = torchvision_trunk("squeezenet1_1", None)  # unpadded 3×3 conv stem, ceil-mode poolings
    with pytest.raises(ConfigError, match=r"1×512×13×13 at 224×224 input: feature maps 13×13"):
        feature_info(trunk, 224)


def test_feature_info_leaves_training_mode_alone():
    trunk = torchvision_trunk("resnet18", None)
    trunk.module.train()
    trunk.module.layer1.eval()
    stats = trunk.module.bn1.running_mean.clone()
    feature_info(trunk, 32)
    assert trunk.module.training and trunk.module.layer4.training and not trunk.module.layer1.training
    assert torch.equal(trunk.module.bn1.running_mean, stats)


def test_missing_and_unexpected_keys(tmp_path, monkeypatch):
    tensors = seeded("resnet18", seed=1).state_dict()
    del tensors["fc.weight"]
    tensors["foo.bar"] = torch.zeros(3)
    path = save(tensors, tmp_path / "bad.safetensors")
    model = seeded("resnet18")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    monkeypatch.setattr(tv, "get_model", lambda name, weights: model)  # to watch the model the error leaves
    with pytest.raises(CheckpointError) as e:
        torchvision_trunk("resnet18", path)
    assert str(e.value) == f"{path}: does not match torchvision resnet18: missing fc.weight; unexpected foo.bar"
    assert [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])] == []


def test_shape_mismatch_names_key_and_shapes(tmp_path):
    tensors = seeded("resnet18").state_dict()
    tensors["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    with pytest.raises(CheckpointError, match="conv1.weight is 64×3×3×3 in the file, 64×3×7×7 in the model"):
        torchvision_trunk("resnet18", save(tensors, tmp_path / "s.safetensors"))


def test_many_missing_keys_are_shortened(tmp_path):
    tensors = {k: v for k, v in seeded("resnet18").state_dict().items() if k.startswith("fc.")}
    with pytest.raises(CheckpointError) as e:
        torchvision_trunk("resnet18", save(tensors, tmp_path / "fc.safetensors"))
    # 122 entries, less fc's 2 and the 20 num_batches_tracked (which may be absent): 100 missing, 8 named
    assert "missing conv1.weight, bn1.weight, bn1.bias, bn1.running_mean" in str(e.value)
    assert str(e.value).endswith("layer1.0.bn1.bias … and 92 more")


def test_pt_file_without_num_batches_tracked_loads(tmp_path):
    model = seeded("resnet18")
    tensors = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(tensors, tmp_path / "r18.pt")
    trunk = torchvision_trunk("resnet18", tmp_path / "r18.pt")
    assert torch.equal(trunk.module.conv1.weight, model.conv1.weight)


def test_unknown_and_unsupported_torchvision_names():
    with pytest.raises(ConfigError, match="no classification model 'resnet81'; did you mean resnet18"):
        torchvision_trunk("resnet81", None)
    with pytest.raises(ConfigError, match=r"swin_t \(SwinTransformer\) is not supported.*supported families: resnet"):
        torchvision_trunk("swin_t", None)


# ── timm ──────────────────────────────────────────────────────────────────────────────────────────────────────────
def test_timm_efficientnet_lite0():
    pytest.importorskip("timm")
    trunk = timm_trunk("tf_efficientnet_lite0", None)
    assert feature_info(trunk, 64) == (1280, 32, 3371008)  # 4652008 minus the classifier (1280·1000 + 1000)
    m = trunk.module
    assert trunk.top == [m.conv_head, m.bn2]
    assert len(trunk.blocks) == 16 and trunk.blocks[0] is m.blocks[0][0] and trunk.blocks[-1] is m.blocks[-1][-1]
    assert not [k for k in m.state_dict() if k.startswith("classifier")]


def test_timm_resnet18_weights_round_trip(tmp_path):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False).eval()
    trunk = timm_trunk("resnet18", save(model.state_dict(), tmp_path / "t.safetensors"))
    x = image(64)
    with torch.no_grad():
        assert torch.equal(trunk.forward(x), model.forward_features(x))
    assert trunk.blocks[-1] is trunk.module.layer4
    assert not [k for k in trunk.module.state_dict() if k.startswith("fc.")]


def test_timm_head_only_modules_are_dropped():
    pytest.importorskip("timm")
    # timm's mobilenetv3 applies conv_head after the global pool: head, not feature extractor
    trunk = timm_trunk("mobilenetv3_small_050", None)
    assert not [k for k in trunk.module.state_dict() if k.startswith(("conv_head", "classifier"))]
    assert trunk.top == []
    assert feature_info(trunk, 64)[0] == 288


def test_timm_names_and_missing_package(monkeypatch):
    pytest.importorskip("timm")
    with pytest.raises(ConfigError, match="timm has no model 'resnet81'; did you mean resnet18"):
        timm_trunk("resnet81", None)
    with pytest.raises(ConfigError, match="not 1×C×h×w feature maps"):
        timm_trunk("vit_tiny_patch16_224", None)
    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` now raises ImportError
    with pytest.raises(ConfigError, match=r"^timm:resnet18 needs the timm package: pip install timm$"):
        timm_trunk("resnet18", None)
