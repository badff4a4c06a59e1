"""Top activations: a hand-set filter finds the image and the place it was made for; windows match the gradients."""

import numpy as np
import pytest
import torch
from PIL import Image

from convscope.builder import build
from convscope.config import TrainConfig
from convscope.data.dataset import Split
from convscope.errors import DataError
from convscope.inspect import top_activations as top_module
from convscope.inspect.top_activations import receptive_window, save_top_activations_png, top_activations
from convscope.run import DataInfo, Run
from convscope.spec import Conv, Dense, GlobalPool, NetSpec, Pool
from convscope.weights import save_weights

SPEC = NetSpec(
    (12, 12, 1),
    (Conv(2, 3, padding="same", activation="none", bias=False, name="bright"), GlobalPool(), Dense(2)),
    name="tiny",
)
SPOT = (5, 8)  # centre of the bright 3×3 block in image 7


def tiny_run(tmp_path) -> Run:
    """A run folder whose conv has two hand-set filters: 0 responds to bright pixels (the centre weighs 1, the
    8 around it 1/36 each, so a bright spot scores most when centred), 1 is its negative (responds to darkness)."""
    bright = torch.full((1, 3, 3), 1 / 36)
    bright[0, 1, 1] = 1.0
    model = build(SPEC)
    with torch.no_grad():
        model.bright.weight.copy_(torch.stack([bright, -bright]))
    save_weights(tmp_path / "weights" / "best.safetensors", model)
    # mean 0, std 1: the layer sees pixels / 255, so a 3×3 block of 255 gives a response of 1 + 8/36.
    return Run(tmp_path, TrainConfig(out=str(tmp_path)), SPEC, DataInfo("synthetic", ("dim", "spot"), (0.0,), (1.0,)))


def images() -> Split:
    rng = np.random.default_rng(0)
    x = rng.integers(1, 40, (20, 12, 12, 1)).astype(np.uint8)  # never 0: only image 11 is black
    r, c = SPOT
    x[7, r - 1 : r + 2, c - 1 : c + 2] = 255  # the brightest place of all
    x[3, 0, 0] = 200  # a dimmer spot in the corner: second place, its window clipped by the border
    x[11] = 0  # a black image: the smallest mean, the top image of filter 1 (the negative mean)
    labels = np.zeros(20, dtype=np.int64)
    labels[7] = 1
    return Split(x, labels)


def test_the_top_image_is_the_one_with_the_spot_and_the_position_is_the_spot(tmp_path):
    result = top_activations(tiny_run(tmp_path), "bright", k=3, data=images())
    first, second, _third = result.filters[0]
    assert (first.image_index, first.position, first.label, first.value) == (7, SPOT, 1, pytest.approx(1 + 8 / 36))
    assert first.window == (4, 7, 7, 10) and first.patch.shape == (3, 3, 1) and (first.patch == 255).all()
    assert second.image_index == 3 and second.position == (0, 0)
    assert second.window == (0, 0, 2, 2) and second.patch.shape == (2, 2, 1)  # the window -1..1 clipped to 0..1
    assert result.filters[1][0].image_index == 11  # the all-black image, where the negated mean is highest (0)
    for hits in result.filters:
        values = [h.value for h in hits]
        assert len(hits) == 3 and values == sorted(values, reverse=True)
        assert len({h.image_index for h in hits}) == 3  # each image at most once per filter
    assert result.map_shape == (12, 12, 2) and result.receptive_field == (3, 3) and result.images_scanned == 20
    assert first.image.shape == (12, 12, 1) and result.classes == ("dim", "spot")


def test_the_scan_in_batches_finds_what_one_batch_finds(tmp_path, monkeypatch):
    run, data = tiny_run(tmp_path), images()
    whole = top_activations(run, "bright", k=4, data=data)
    monkeypatch.setattr(top_module, "BATCH", 3)  # 7 batches, the last one of 2 images
    batched = top_activations(run, "bright", k=4, data=data)
    for a, b in zip(whole.filters, batched.filters, strict=True):
        assert [(h.image_index, h.position) for h in a] == [(h.image_index, h.position) for h in b]
        np.testing.assert_allclose([h.value for h in a], [h.value for h in b], rtol=1e-6)
    few = top_activations(run, "bright", k=50, data=data, max_images=5)  # k larger than the images: all of them
    assert few.images_scanned == 5 and all(len(hits) == 5 for hits in few.filters)


@pytest.mark.parametrize(
    "layers",
    [
        (Conv(3, 3, padding="same", activation="none"), Pool("avg"), Conv(3, 3, activation="none")),
        (
            Conv(3, 4, stride=2, padding="same", activation="none"),
            Conv(3, 3, stride=2, padding="same", activation="none"),
        ),
        (Conv(3, 5, padding=(2, 1), activation="none"), Pool("avg", 3, 2, padding="same"), Conv(3, (2, 3), 2)),
    ],
    ids=["same-pool-valid", "strided-same-uneven", "explicit-padding-avg-pool"],
)
def test_the_window_is_exactly_where_the_gradient_reaches(layers):
    # Linear layers with random weights: an output position depends on every input pixel of its window and on no
    # other, so the nonzero gradient's bounding box is the window clipped to the image.
    spec = NetSpec((15, 13, 1), (*layers, GlobalPool(), Dense(2)))
    layer = spec.layer_names()[len(layers) - 1]
    rf, jump, offset = receptive_window(spec, layer)
    torch.manual_seed(0)
    model = build(spec).eval()
    x = torch.randn(1, 1, 15, 13, requires_grad=True)
    _, maps = model.forward_intermediates(x, [layer])
    out = maps[layer]
    for i, j in np.ndindex(*out.shape[2:]):
        (grad,) = torch.autograd.grad(out[0, :, i, j].sum(), x, retain_graph=True)
        rows, cols = np.nonzero(grad[0, 0].numpy())
        top, left = i * jump[0] - offset[0], j * jump[1] - offset[1]
        expected = (max(top, 0), max(left, 0), min(top + rf[0], 15), min(left + rf[1], 13))
        assert (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1) == expected, (i, j)


def test_the_picture_has_a_row_per_filter(tmp_path):
    result = top_activations(tiny_run(tmp_path), "bright", k=3, data=images())
    path = save_top_activations_png(result, tmp_path / "pictures" / "top.png")
    one = save_top_activations_png(result, tmp_path / "one.png", filters=[1])
    with Image.open(path) as a, Image.open(one) as b:
        assert a.size[1] > b.size[1] > 200  # two rows are taller than one
        pixels = np.asarray(a.convert("RGB")).astype(int)
    assert pixels.std() > 20
    red = (pixels[:, :, 0] > 200) & (pixels[:, :, 1] < 80) & (pixels[:, :, 2] < 80)
    assert red.sum() > 50  # the receptive-field boxes are drawn
    with pytest.raises(DataError, match=r"filters must be in 0\.\.1"):
        save_top_activations_png(result, tmp_path / "bad.png", filters=[5])


def test_layers_without_feature_maps_and_bad_k_are_errors(tmp_path):
    run = tiny_run(tmp_path)
    with pytest.raises(DataError, match="'dense1' is not a layer with feature maps. Choose from: bright"):
        top_activations(run, "dense1", data=images())
    with pytest.raises(DataError, match="k must be at least 1"):
        top_activations(run, "bright", k=0, data=images())
