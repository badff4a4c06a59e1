"""Grad-CAM: a known answer (a network trained to find squares looks at the square), the formula, no side effects."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convscope.builder import build
from convscope.config import TrainConfig
from convscope.errors import ConvscopeError, DataError
from convscope.inspect.gradcam import default_layer, gradcam, gradcam_for_run, overlay, save_gradcam_png
from convscope.loaded import load_model
from convscope.preprocess import normalise, to_tensor
from convscope.presets import get_preset
from convscope.spec import Activation, BatchNorm, Conv, Dense, Flatten, GlobalPool, NetSpec, Pool
from convscope.tasks.train import train

SIZE = 32  # images are SIZE×SIZE×1
SEED = 0  # the committed seed; seeds 0-9 were each checked locally (counts in test_the_peak_lies_on_the_square)
MARGIN = 1  # a peak up to 1 pixel outside the square still counts (bilinear upsampling of a 16×16 map blurs edges)


def _disc(image: np.ndarray, top: int, left: int, size: int, value: float) -> None:
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    centre = (size - 1) / 2
    image[(yy - top - centre) ** 2 + (xx - left - centre) ** 2 <= (size / 2) ** 2] = value


def make_image(rng: np.random.Generator, square: bool) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Noise with two bright objects 6-8 pixels wide that do not touch: a disc, and a square (class 1) or another
    disc (class 0). Brightness cannot tell the classes apart, only the square's shape, so the evidence for class 1
    is at the square, and the disc is a decoy. Returns uint8 H×W and the square's (top, left, size)."""
    image = rng.normal(70, 25, (SIZE, SIZE))
    while True:
        s1, s2 = rng.integers(6, 9, 2)
        p1, p2 = rng.integers(0, SIZE - s1 + 1, 2), rng.integers(0, SIZE - s2 + 1, 2)
        if max(abs(p1[0] - p2[0]), abs(p1[1] - p2[1])) > max(s1, s2) + 1:
            break
    _disc(image, p1[0], p1[1], s1, rng.normal(220, 15))
    if square:
        image[p2[0] : p2[0] + s2, p2[1] : p2[1] + s2] = rng.normal(220, 15)
    else:
        _disc(image, p2[0], p2[1], s2, rng.normal(220, 15))
    return np.clip(image, 0, 255).astype(np.uint8), (int(p2[0]), int(p2[1]), int(s2))


SQUARES = NetSpec(
    (SIZE, SIZE, 1),
    (
        Conv(16, 3, padding="same"),
        Pool(),
        Conv(32, 3, padding="same"),
        Conv(32, 3, padding="same"),  # conv3: 16×16, the default Grad-CAM layer
        GlobalPool("avg"),
        Dense(2),
    ),
    name="squares",
)


def train_squares(root: Path, seed: int, per_class: int = 600, epochs: int = 12):
    """Write the image folder (one subfolder per class, as `convscope train` reads it) and train on it."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(("discs", "square")):
        (root / "data" / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(make_image(rng, bool(label))[0]).save(root / "data" / name / f"{i:04}.png")
    (root / "squares.yaml").write_text(SQUARES.to_yaml())
    settings = {"epochs": epochs, "batch_size": 32, "augment": "none", "seed": seed, "threads": 2}
    return train(
        TrainConfig(model=str(root / "squares.yaml"), data=str(root / "data"), out=str(root / "run"), **settings)
    )


def peaks_on_square(run, seed: int, count: int = 60) -> tuple[int, int, int]:
    """(peaks within MARGIN of the square, peaks strictly inside, count) over `count` new class-1 images."""
    model = load_model(run)
    mean, std = torch.tensor(run.data.mean).view(1, 1, 1, 1), torch.tensor(run.data.std).view(1, 1, 1, 1)
    rng = np.random.default_rng([seed, 1])  # a stream the training images did not come from
    near = inside = 0
    for _ in range(count):
        image, (top, left, size) = make_image(rng, square=True)
        result = gradcam(model, normalise(to_tensor(image[None, :, :, None]), mean, std), class_index=1)
        r, c = np.unravel_index(np.argmax(result.heatmap), result.heatmap.shape)
        near += top - MARGIN <= r < top + size + MARGIN and left - MARGIN <= c < left + size + MARGIN
        inside += top <= r < top + size and left <= c < left + size
    return near, inside, count


@pytest.fixture(scope="module")
def squares(tmp_path_factory):
    return train_squares(tmp_path_factory.mktemp("squares"), SEED)


def test_the_peak_lies_on_the_square(squares):
    # Measured with 100 images per seed, seeds 0-9: 100/100 peaks within the margin for every seed, and strictly
    # inside the square 100/100 (seed 9: 99/100). Trained too little (300 images a class,
    # 6 epochs: 63% accuracy) it got 73/100 and 86/100 (seeds 0, 1): the test does tell.
    near, inside, count = peaks_on_square(squares, SEED)
    assert squares.results()["test_acc"] >= 0.9
    assert near >= 0.9 * count, f"Grad-CAM peak on the square in {near}/{count} images ({inside} strictly inside)"


def test_for_a_layer_before_global_average_pooling_grad_cam_is_cam(squares):
    # logit_c = Σ_k W[c,k]·mean(A_k) + b, so ∂logit_c/∂A_k = W[c,k]/(h·w) everywhere: cam = ReLU(Σ_k W[c,k] A_k)/(h·w)
    model = load_model(squares)
    image, _ = make_image(np.random.default_rng(5), square=True)
    mean, std = torch.tensor(squares.data.mean).view(1, 1, 1, 1), torch.tensor(squares.data.std).view(1, 1, 1, 1)
    x = normalise(to_tensor(image[None, :, :, None]), mean, std)
    _, maps = model.forward_intermediates(x, ["conv3"])
    a = maps["conv3"][0].detach()
    for class_index, method in ((0, "gradcam"), (1, "gradcam"), (0, "hirescam"), (1, "hirescam")):
        result = gradcam(model, x, class_index=class_index, method=method)  # the two agree before an average pool
        weights = model.dense1.weight[class_index].detach()
        expected = torch.relu(torch.einsum("k,khw->hw", weights, a)) / a[0].numel()
        assert result.layer == "conv3" and result.layer_map.shape == (16, 16)
        np.testing.assert_allclose(result.layer_map, expected.numpy(), rtol=1e-4, atol=1e-6)
        probability = torch.softmax(model(x).detach(), 1)[0, class_index]
        assert result.probability == pytest.approx(float(probability), rel=1e-5)
        assert result.heatmap.shape == (SIZE, SIZE) and result.heatmap.dtype == np.float32
    assert gradcam(model, x).class_index == 1  # the predicted class by default
    assert result.heatmap.min() >= 0 and result.heatmap.max() == pytest.approx(1.0)  # divided by its peak
    # No positive evidence anywhere (a class-1 map of pure noise): an all-zero heatmap, not a division by zero.
    blank = gradcam(model, torch.full((1, 1, SIZE, SIZE), -1.0), class_index=1)
    assert np.isfinite(blank.heatmap).all() and blank.heatmap.min() >= 0


def test_the_model_is_left_as_it_was():
    torch.manual_seed(0)
    model = build(get_preset("fashion-fast")).train()
    model.conv1.weight.requires_grad_(False)
    flags = [p.requires_grad for p in model.parameters()]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.inference_mode():  # also works when the caller is in inference mode
        result = gradcam(model, torch.randn(1, 1, 28, 28), layer="conv2")
    assert result.layer == "conv2" and result.layer_map.shape == (14, 14) and result.heatmap.shape == (28, 28)
    assert model.training and [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks and not m._backward_hooks and not m._forward_pre_hooks for m in model.modules())
    after = model.state_dict()  # batchnorm running statistics too: the pass ran in eval mode
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_the_default_layer_is_the_last_activated_feature_map():
    assert default_layer(get_preset("fashion-fast")) == "activation3"  # after its pool: conv, pool, batchnorm, relu
    bn_relu_pool = NetSpec((8, 8, 1), (Conv(4, 3, activation="none"), BatchNorm(), Activation("relu"), Pool()))
    assert default_layer(bn_relu_pool) == "activation1"  # 6×6, not pool1 (3×3)
    assert default_layer(SQUARES) == "conv3"
    plain = NetSpec((8, 8, 1), (Conv(4, 3, activation="none"), BatchNorm(), Pool(), Flatten(), Dense(2)))
    assert default_layer(plain) == "conv1"
    late = NetSpec((8, 8, 1), (Conv(4, 3), Conv(4, 3, activation="none"), Activation("relu"), Flatten(), Dense(2)))
    assert default_layer(late) == "activation1"


def test_wrong_layer_class_or_input_is_a_readable_error():
    model = build(SQUARES).eval()
    x = torch.zeros(1, 1, SIZE, SIZE)
    with pytest.raises(DataError, match=r"'dense1' is not one\. Choose from: conv1, pool1, conv2, conv3"):
        gradcam(model, x, layer="dense1")
    with pytest.raises(DataError, match="class_index must be in 0..1"):
        gradcam(model, x, class_index=2)
    with pytest.raises(DataError, match="method must be one of hirescam, gradcam, layercam. Received: 'cam'"):
        gradcam(model, x, method="cam")
    with pytest.raises(DataError, match="one image"):
        gradcam(model, torch.zeros(2, 1, SIZE, SIZE))
    with pytest.raises(DataError, match="expects images of 32×32×1"):
        gradcam(model, torch.zeros(1, 3, SIZE, SIZE))


def test_gradcam_for_run_by_class_name_and_the_picture(squares, tmp_path):
    image, _ = make_image(np.random.default_rng(99), square=True)
    Image.fromarray(image).resize((96, 96)).convert("RGB").save(tmp_path / "big.png")  # converted like predict
    result = gradcam_for_run(squares, tmp_path / "big.png", class_name="SQUARE")
    assert result.class_name == "square" and result.class_index == 1 and result.heatmap.shape == (SIZE, SIZE)
    assert result.image.shape == (SIZE, SIZE, 1) and result.image.dtype == np.uint8  # as the model took it
    assert gradcam_for_run(squares.path, tmp_path / "big.png", class_name="discs", layer="conv2").layer == "conv2"
    with pytest.raises(ConvscopeError) as err:
        gradcam_for_run(squares, tmp_path / "big.png", class_name="circle")
    assert str(err.value).endswith("Classes: discs, square") and "\n" not in str(err.value)
    png = save_gradcam_png(result, result.image, tmp_path / "out" / "gradcam.png", title="big.png")
    with Image.open(png) as picture:
        pixels = np.asarray(picture.convert("L"))
    assert picture.size[0] >= 1000 and pixels.std() > 20  # drawn, not a blank canvas


def test_overlay_blends_gray_and_rgb_images():
    heat = np.zeros((4, 5), dtype=np.float32)
    heat[1, 2] = 1.0
    gray = np.full((4, 5, 1), 200, dtype=np.uint8)
    out = overlay(gray, heat)
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8
    assert tuple(out[0, 0]) != tuple(out[1, 2])  # cold and hot differ
    assert out[1, 2, 0] > out[1, 2, 2] and out[0, 0, 2] > out[0, 0, 0]  # 'jet': hot is red, cold is blue
    np.testing.assert_array_equal(overlay(np.full((4, 5, 3), 200, np.uint8), heat), out)
    with pytest.raises(DataError, match="differ"):
        overlay(gray, np.zeros((3, 3)))
