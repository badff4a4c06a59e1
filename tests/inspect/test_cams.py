"""Class maps inside a pretrained base, LayerCAM, multi-layer fusion and mirror smoothing: against pytorch-grad-cam
(the reference library) and against the maps they are made of, computed by hand."""

import numpy as np
import pytest
import torch

from convscope.builder import build
from convscope.errors import DataError
from convscope.inspect.gradcam import default_layer, gradcam
from convscope.pretrained.finetune import transfer_spec

SIZE = 64  # Lite0 maps: block11 (stride 16) 4×4, the base's output (stride 32) 2×2


@pytest.fixture(scope="module")
def lite0():
    spec = transfer_spec("efficientnet-lite0", SIZE)
    torch.manual_seed(0)
    model = build(spec, pretrained=False).eval()  # random weights: no file needed, the formulas do not care
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):  # statistics of real maps, not the initial 0 and 1
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    return model, torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def test_the_default_layer_of_a_lite0_transfer_net_is_its_last_stride_16_block(lite0):
    model, x = lite0
    assert default_layer(model.spec) == "base1.block11"
    result = gradcam(model, x)
    assert result.layer == "base1.block11" and result.layer_map.shape == (SIZE // 16, SIZE // 16)
    assert gradcam(model, x, layer="base1").layer_map.shape == (SIZE // 32, SIZE // 32)
    assert result.heatmap.shape == (SIZE, SIZE) and result.heatmap.max() == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["hirescam", "gradcam", "layercam"])
@pytest.mark.parametrize("layer", ["base1.block11", "base1.block3", "base1"])
def test_maps_inside_the_base_equal_pytorch_grad_cams(lite0, method, layer):
    import pytorch_grad_cam as grad_cam  # a dev dependency (pyproject.toml)
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, x = lite0
    module = model.base if layer == "base1" else model.base.blocks[int(layer.split("block")[1]) - 1]
    reference = {"gradcam": grad_cam.GradCAM, "hirescam": grad_cam.HiResCAM, "layercam": grad_cam.LayerCAM}[method]
    peaks = []
    for class_index in range(3):
        ours = gradcam(model, x, layer=layer, class_index=class_index, method=method)
        with reference(model=model, target_layers=[module]) as cam:
            targets = [ClassifierOutputTarget(class_index)]
            cam(input_tensor=x.clone(), targets=targets)
            acts = [a.cpu().numpy() for a in cam.activations_and_grads.activations]
            grads = [g.cpu().numpy() for g in cam.activations_and_grads.gradients]
            raw = cam.get_cam_image(x, module, targets, acts[0], grads[0], False)[0]
        model.zero_grad(set_to_none=True)
        assert ours.layer_map.shape == raw.shape
        np.testing.assert_allclose(ours.layer_map, np.maximum(raw, 0), rtol=1e-4, atol=1e-6)
        peaks.append(float(ours.layer_map.max()))
    assert max(peaks) > 0  # not a comparison of zeros (Grad-CAM's map of one class can be all zero)


def test_layercam_keeps_only_the_positive_gradients_by_hand(lite0):
    # LayerCAM(i, j) = ReLU(Σ_k ReLU(G_k(i, j)) · A_k(i, j)); with A ≥ 0 (ReLU6 maps) it is at least HiResCAM's.
    model, x = lite0
    hires = gradcam(model, x, layer="base1", class_index=1, method="hirescam").layer_map
    layer = gradcam(model, x, layer="base1", class_index=1, method="layercam").layer_map
    assert np.all(layer >= hires - 1e-6) and not np.allclose(layer, hires)


def test_fusion_is_the_mean_of_each_layers_normalised_heatmap(lite0):
    model, x = lite0
    fine = gradcam(model, x, layer="base1.block11", class_index=0).heatmap
    coarse = gradcam(model, x, layer="base1", class_index=0).heatmap
    fused = gradcam(model, x, layer=["base1.block11", "base1"], class_index=0)
    mean = (fine + coarse) / 2
    np.testing.assert_allclose(fused.heatmap, mean / mean.max(), rtol=1e-5, atol=1e-6)
    assert fused.layer == "base1.block11+base1" and fused.layer_map.shape == (SIZE // 16, SIZE // 16)


def test_mirror_smoothing_averages_the_mirrored_images_map_mirrored_back(lite0):
    model, x = lite0
    plain = gradcam(model, x, class_index=2).heatmap
    mirrored = gradcam(model, x.flip(-1), class_index=2).heatmap[:, ::-1]
    smooth = gradcam(model, x, class_index=2, mirror=True)
    mean = (plain + mirrored) / 2
    np.testing.assert_allclose(smooth.heatmap, mean / mean.max(), rtol=1e-5, atol=1e-6)
    assert smooth.class_index == 2 and not np.allclose(smooth.heatmap, plain)


def test_inner_layers_leave_no_hook_and_no_gradient(lite0):
    model, x = lite0
    gradcam(model, x, layer=["base1.stem", "base1.block5", "base1"], mirror=True)
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    assert all(p.grad is None for p in model.parameters())
    assert not model.training


def test_a_layer_that_is_not_there_is_one_readable_line(lite0):
    model, x = lite0
    with pytest.raises(DataError, match=r"'base1.block99' is not one. Choose from: base1.stem, base1.block1, "):
        gradcam(model, x, layer="base1.block99")
    with pytest.raises(DataError, match="name at least one layer"):
        gradcam(model, x, layer=[])
    with pytest.raises(DataError, match="method must be one of hirescam, gradcam, layercam"):
        gradcam(model, x, method="scorecam")
