"""The device option: names resolved or refused in one line, the autocast precision per device, resume across devices.

This machine has no GPU; CUDA runs through bench/gpu_smoke.sh. Here the CPU goes through the same code path (the
trainer and the inference functions move everything to the resolved device), and the CUDA-only choices are checked
with torch's CUDA queries answered by monkeypatch.
"""

from __future__ import annotations

import pytest
import torch
from helpers import make_folder

from convscope import device as D
from convscope.errors import ConfigError
from convscope.tasks.train import train

NO_GPU = not torch.cuda.is_available()


@pytest.mark.skipif(not NO_GPU, reason="checks what a machine without a GPU answers")
def test_auto_is_the_cpu_here_and_a_missing_gpu_is_refused_in_one_line():
    assert D.resolve_device("auto") == torch.device("cpu") == D.resolve_device("cpu")
    for name in ("cuda", "cuda:1"):
        with pytest.raises(ConfigError, match=rf"^device {name}: no CUDA GPU here \(this machine has: cpu\)$"):
            D.resolve_device(name)


def test_a_gpu_index_past_the_gpus_there_names_the_ones_there(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert D.resolve_device("cuda") == torch.device("cuda", 0)
    assert D.resolve_device("cuda:1") == torch.device("cuda", 1)
    assert D.resolve_device("auto") == torch.device("cuda", 0)  # a GPU first, when there is one
    with pytest.raises(ConfigError, match=r"has 2 CUDA GPU\(s\), cuda:0 to cuda:1"):
        D.resolve_device("cuda:2")


@pytest.mark.parametrize(
    ("kind", "precision", "bf16_gpu", "expected", "scaler"),
    [
        ("cuda", "fp32", True, None, False),
        ("cuda", "auto", True, torch.bfloat16, False),  # Ampere and later
        ("cuda", "auto", False, torch.float16, True),  # older GPUs: fp16 needs loss scaling
        ("cuda", "bf16", False, torch.bfloat16, False),  # asked for: given
        ("cpu", "bf16", True, torch.bfloat16, False),
        ("cpu", "fp32", True, None, False),
        ("mps", "auto", True, None, False),
    ],
)
def test_the_autocast_precision_of_each_device(monkeypatch, kind, precision, bf16_gpu, expected, scaler):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16_gpu)
    device = torch.device(kind)
    assert D.autocast_dtype(device, precision) == expected
    assert D.needs_grad_scaler(device, precision) is scaler


@pytest.mark.skipif(not NO_GPU, reason="checks what a machine without a GPU answers")
def test_training_on_a_device_that_is_not_there_writes_nothing(tmp_path):
    folder = make_folder(tmp_path / "images", per_class=6)
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="^device cuda: no CUDA GPU here"):
        train(model="lenet5", data=str(folder), epochs=1, device="cuda", out=str(out), report=False)
    assert not out.exists()


@pytest.mark.skipif(not NO_GPU, reason="checks what a machine without a GPU answers")
def test_a_resumed_run_may_move_device_and_a_missing_one_leaves_it_untouched(tmp_path):
    folder = make_folder(tmp_path / "images", per_class=8)
    run = train(
        model="lenet5", data=str(folder), epochs=1, batch_size=16, threads=1, out=str(tmp_path / "run"), report=False
    )
    config = (run.path / "config.yaml").read_bytes()
    with pytest.raises(ConfigError, match="^device cuda:0: no CUDA GPU here"):
        train(resume=run.path, epochs=2, device="cuda:0")
    assert (run.path / "config.yaml").read_bytes() == config  # refused before the config was touched
    resumed = train(resume=run.path, epochs=2, device="cpu", report=False)
    assert resumed.config.device == "cpu" and len(resumed.metrics()) == 2


def test_evaluate_and_inspection_take_a_device(tmp_path):
    from convscope.classify.evaluate import evaluate
    from convscope.inspect.featuremaps import feature_maps
    from convscope.inspect.gradcam import gradcam_for_run

    folder = make_folder(tmp_path / "images", per_class=8)
    run = train(
        model="lenet5", data=str(folder), epochs=1, batch_size=16, threads=1, out=str(tmp_path / "run"), report=False
    )
    image = next(folder.rglob("*.png"))
    assert evaluate(run, device="cpu").accuracy == evaluate(run, device="auto").accuracy
    maps = feature_maps(run, image, device="cpu")
    assert all(m.maps.dtype.kind == "f" for m in maps.layers)
    assert gradcam_for_run(run, image, device="cpu").heatmap.shape == run.spec.input[:2]
    if NO_GPU:
        with pytest.raises(ConfigError, match="no CUDA GPU here"):
            evaluate(run, device="cuda")


def test_augmentation_keeps_the_batch_on_its_device_with_a_cpu_generator():
    """PyTorch's meta device stands in for a GPU here: any tensor left on the CPU in an operation with meta tensors
    raises (detection's mirror flip did, before its mask was moved). The generator stays on the CPU on every device,
    so the draws are the same everywhere."""
    from convscope.data.augment import Augment
    from convscope.data.augment_batch import augment_batch
    from convscope.data.detection.augment import flip

    meta, generator = torch.device("meta"), torch.Generator()
    x = torch.zeros(4, 3, 32, 32, device=meta)
    assert augment_batch(x, Augment.parse("flip,translate=2,cutout=8"), generator).device == meta
    boxes = [torch.tensor([[1.0, 2.0, 10.0, 12.0]], device=meta) for _ in range(4)]
    images, moved = flip(x, boxes, generator)
    assert images.device == meta and all(b.device == meta for b in moved)
