"""convscope.fused: the inference copy computes what the network computes in eval mode, with its batchnorms folded
into the convs before them, and never changes the network it was made from.

Tolerance: folding changes the order of float32 roundings (W·s is rounded once per weight, instead of the conv's
sum being scaled), so outputs differ by a few float32 ulps per layer; through Lite0's ~50 layers that stays below
1e-5 of the output's scale. rtol/atol 1e-4 (atol relative to the largest output) is ten times that, and smaller than
what a wrong fold gives (ε 1e-5 where Lite0 has 1e-3 shifts outputs by ~5e-4; a missing shift by O(1)).
"""

from __future__ import annotations

import pytest
import torch
from helpers import TINY_LITE0_DET, make_folder
from torch import nn

from convscope.builder import build
from convscope.fused import FoldedConvBN, inference_copy
from convscope.layers import Pool2d
from convscope.pretrained.efficientnet import efficientnet_lite0
from convscope.spec import NetSpec

TOLERANCE = 1e-4


def batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def trained_looking(model: nn.Module, seed: int = 0) -> nn.Module:
    """`model` with batchnorm statistics and scales away from their initial 0/1 (a fold of those is nearly the
    identity and would prove little), in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d) and m.track_running_stats:
                n = m.num_features
                m.running_mean.copy_(0.2 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=g))
                if m.affine:
                    m.weight.copy_(0.5 + torch.rand(n, generator=g))
                    m.bias.copy_(0.2 * torch.randn(n, generator=g))
    return model.train(False)


def assert_same_outputs(model: nn.Module, fused: nn.Module, x: torch.Tensor) -> None:
    with torch.inference_mode():
        expected, got = model(x), fused(x)
    scale = float(expected.abs().max())
    assert scale > 0
    torch.testing.assert_close(got, expected, rtol=TOLERANCE, atol=TOLERANCE * scale)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_cifar_fast_folds_every_batchnorm_and_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    model = trained_looking(build("cifar-fast")).to(memory_format=torch.channels_last)
    model.train(True)  # the trainer's model between epochs: it stays in training mode
    before = snapshot(model)
    fused = inference_copy(model)
    assert model.training and not fused.training
    assert batchnorms(model) == 6 and batchnorms(fused) == 0  # 3 after a conv, 3 after conv → max pool
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)  # bit-identical
    assert [n for n, _ in fused.named_children()] == [n for n, _ in model.named_children()]
    assert fused.conv2.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(4, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    assert_same_outputs(model.train(False), fused, x)


def test_conv_bn_activation_folds_but_an_activation_before_the_batchnorm_does_not():
    spec = NetSpec.from_dict(
        {
            "name": "conv-bn-act",
            "input": "12x12x3",
            "layers": [
                {"conv": {"filters": 8, "size": 3, "padding": "same", "activation": "none"}},
                "batchnorm",
                {"activation": {"function": "relu"}},
                {"conv": {"filters": 8, "size": 3, "stride": 2, "padding": "same", "activation": "relu"}},
                "batchnorm",  # after conv2's relu: not an affine map of the conv's output
                {"conv": {"filters": 4, "size": 3, "padding": "same", "bias": False, "activation": "none"}},
                {"pool": {"kind": "avg", "size": 2, "padding": "same"}},
                "batchnorm",
                "flatten",
                {"dense": {"units": 3}},
            ],
        }
    )
    torch.manual_seed(1)
    model = trained_looking(build(spec))
    fused = inference_copy(model)
    kept = [name for name, m in fused.named_children() if isinstance(m, nn.BatchNorm2d)]
    assert kept == ["batchnorm2"]
    assert fused.conv3.bias is not None and model.conv3.bias is None
    assert_same_outputs(model, fused, torch.randn(5, 3, 12, 12))


def test_a_batchnorm_without_affine_parameters_folds():
    torch.manual_seed(2)
    model = trained_looking(nn.Sequential(nn.Conv2d(3, 6, 3, bias=False), nn.BatchNorm2d(6, affine=False), nn.ReLU()))
    fused = inference_copy(model)
    assert isinstance(fused[1], nn.Identity) and isinstance(model[1], nn.BatchNorm2d)
    assert_same_outputs(model, fused, torch.randn(2, 3, 9, 9))


def test_lite0_folds_every_conv_bn_and_is_a_copy_of_its_own():
    torch.manual_seed(3)
    model = trained_looking(efficientnet_lite0(pretrained=False))
    before = snapshot(model)
    fused = inference_copy(model)
    assert batchnorms(fused) == 0 and batchnorms(model) == 49
    assert isinstance(fused.stem, FoldedConvBN) and isinstance(fused.blocks[3].project, FoldedConvBN)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    x = torch.randn(2, 3, 35, 45)  # odd sizes: the TensorFlow 'same' padding is uneven at every stride 2
    assert_same_outputs(model, fused, x)
    with torch.no_grad():  # the copy shares nothing with the model
        model.stem.conv.weight.zero_()
    with torch.inference_mode():
        assert fused(x).abs().max() > 0 and torch.isfinite(fused(x)).all()


def test_the_lite0_detector_folds_its_base_and_its_head():
    torch.manual_seed(4)
    model = trained_looking(build(NetSpec.from_dict(TINY_LITE0_DET), pretrained=False))
    fused = inference_copy(model)
    assert batchnorms(model) > 0 and batchnorms(fused) == 0
    assert isinstance(fused[-1].bn, nn.Identity) and isinstance(model[-1].bn, nn.BatchNorm2d)
    x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    assert_same_outputs(model, fused, x)
    # the copy's base runs the copy's network, not the model's (BaseNet keeps a bound forward)
    assert fused[0]._forward.__self__ is fused[0].net and fused[0].net is not model[0].net


class KeepsBatchStatistics(nn.Sequential):
    """Test-time adaptation: its batchnorm normalises by each batch's statistics, also in eval mode."""

    def train(self, mode: bool = True):
        super().train(mode)
        self[1].train(True)
        return self


class SharedConvOutput(nn.Module):
    """The conv's output feeds the batchnorm and a residual: folding would change the residual."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


class Branches(nn.Sequential):
    """A Sequential whose forward is not the chain of its children."""

    def forward(self, x):
        return self[1](x) + self[0](x)


@pytest.mark.parametrize(
    "make",
    [
        lambda: KeepsBatchStatistics(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)),
        SharedConvOutput,
        lambda: Branches(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)),
        lambda: nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4, track_running_stats=False)),
    ],
    ids=["train-mode", "shared-input", "not-a-chain", "no-running-stats"],
)
def test_a_batchnorm_it_cannot_prove_safe_is_left_alone(make):
    torch.manual_seed(5)
    model = make()
    trained_looking(model)
    fused = inference_copy(model)
    assert batchnorms(fused) == 1
    assert fused.state_dict().keys() == model.state_dict().keys()
    x = torch.randn(3, 4, 6, 6)
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), model(x))


def test_a_negative_scale_stops_a_max_pool_fold_but_not_an_average():
    torch.manual_seed(6)
    for kind, folds in (("max", False), ("min", False), ("avg", True)):
        model = trained_looking(nn.Sequential(nn.Conv2d(3, 4, 3), Pool2d(kind, 2, padding="same"), nn.BatchNorm2d(4)))
        with torch.no_grad():
            model[2].weight[1] = -0.7  # max(−y) = −min(y): the batchnorm cannot move before a max pool
        fused = inference_copy(model)
        assert isinstance(fused[2], nn.Identity) == folds, kind
        assert_same_outputs(model, fused, torch.randn(2, 3, 9, 9))


def test_a_trained_runs_test_accuracy_is_what_the_unfused_network_scores(tmp_path):
    from convscope.classify.evaluate import evaluate, load_test_split
    from convscope.loaded import load, load_model, with_test_flips
    from convscope.preprocess import predict_logits, to_tensor
    from convscope.tasks.train import train

    folder = make_folder(tmp_path / "images", per_class=16, size=16)
    run = train(
        model="fashion-fast", data=str(folder), epochs=1, batch_size=8, threads=1, out=str(tmp_path / "r"), report=False
    )
    images, labels = load_test_split(run)
    loaded = load(run, "cpu")
    plain = with_test_flips(load_model(run), run.config)
    assert batchnorms(plain) == 3 and batchnorms(loaded.fused) == 0 and batchnorms(loaded.model) == 3
    logits = predict_logits(plain, to_tensor(images), loaded.mean, loaded.std)
    fused_logits = predict_logits(with_test_flips(loaded.fused, run.config), to_tensor(images), loaded.mean, loaded.std)
    torch.testing.assert_close(fused_logits, logits, rtol=TOLERANCE, atol=TOLERANCE * float(logits.abs().max()))
    accuracy = float((logits.argmax(1) == torch.from_numpy(labels)).float().mean())
    assert run.results()["test_acc"] == pytest.approx(accuracy)  # training tested with the fused copy
    assert evaluate(run, device="cpu").accuracy == pytest.approx(accuracy)  # so does `convscope evaluate`
