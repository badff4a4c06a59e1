"""HiResCAM against Grad-CAM on a flatten + dense head, and both against pytorch-grad-cam, the reference library."""

import numpy as np
import pytest
import torch

from convscope.builder import build
from convscope.inspect.gradcam import gradcam
from convscope.presets import get_preset


@pytest.fixture(scope="module")
def fashion():
    torch.manual_seed(0)
    model = build(get_preset("fashion-fast")).eval()
    with torch.no_grad():  # a batchnorm with the statistics of real maps, not the initial 0 and 1
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model, torch.randn(1, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def test_hirescam_is_each_positions_share_of_the_logit_before_a_flatten_head(fashion):
    # After activation3 come flatten, dropout (off in eval mode) and dense: y_c = Σ_{k,i,j} W[c,k,i,j]·A_k(i,j) + b_c,
    # so ∂y_c/∂A_k(i,j) = W[c,k,i,j] and HiResCAM(i, j) = ReLU(Σ_k W[c,k,i,j]·A_k(i,j)) exactly.
    model, x = fashion
    _, maps = model.forward_intermediates(x, ["activation3"])
    a = maps["activation3"][0].detach()  # 128×3×3
    weights = model.dense1.weight.detach().view(10, *a.shape)
    for class_index in range(10):
        share = (weights[class_index] * a).sum(0)
        result = gradcam(model, x, class_index=class_index)
        assert result.method == "hirescam" and result.layer == "activation3"
        np.testing.assert_allclose(result.layer_map, torch.relu(share).numpy(), rtol=1e-4, atol=1e-6)
        logit = model(x)[0, class_index].detach()
        assert float(share.sum()) == pytest.approx(
            float(logit - model.dense1.bias[class_index].detach()), rel=1e-4, abs=1e-5
        )


@pytest.mark.parametrize("method", ["gradcam", "hirescam"])
@pytest.mark.parametrize("layer", ["activation3", "conv2", "pool1"])
def test_the_maps_equal_pytorch_grad_cams(fashion, method, layer):
    import pytorch_grad_cam as grad_cam  # a dev dependency (pyproject.toml)
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, x = fashion
    reference = {"gradcam": grad_cam.GradCAM, "hirescam": grad_cam.HiResCAM}[method]
    for class_index in (0, 3, 9):
        ours = gradcam(model, x, layer=layer, class_index=class_index, method=method)
        with reference(model=model, target_layers=[getattr(model, layer)]) as cam:
            targets = [ClassifierOutputTarget(class_index)]
            cam(input_tensor=x.clone(), targets=targets)
            acts = [a.cpu().numpy() for a in cam.activations_and_grads.activations]
            grads = [g.cpu().numpy() for g in cam.activations_and_grads.gradients]
            raw = cam.get_cam_image(x, getattr(model, layer), targets, acts[0], grads[0], False)[0]
        model.zero_grad(set_to_none=True)  # the library's backward pass fills the parameters' .grad; ours does not
        np.testing.assert_allclose(ours.layer_map, np.maximum(raw, 0), rtol=1e-4, atol=1e-6)
