"""What each filter looks for: the image that excites it most, found by gradient ascent in input space.

The recipe is Chollet's (Deep Learning with Python, 2nd ed., §9.4 "Visualizing convnet filters"): start from a gray
image with a little noise and change the image, not the network, so that the mean response of one filter rises.
Two findings of Olah, Mordvintsev & Schubert, "Feature Visualization" (Distill, 2017) make the pictures readable:
- **a Fourier parametrisation, scaled by 1/frequency** (their preconditioning): the optimiser moves smooth patterns
  first, instead of the high-frequency noise plain pixel-space ascent fills the image with;
- **transformation robustness**: every step sees the image shifted by a few pixels and slightly scaled and rotated,
  so a pattern that excites the filter at one exact pixel offset only (adversarial noise) does not win.
The picture is 255·sigmoid(·) of that parametrisation: always an image in [0, 255] with the run's channels, normalised
with the run's mean and std before the network, exactly as a photo would be. All the filters asked for are optimised
together, one image each, in one batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from convscope.errors import DataError
from convscope.loaded import LoadedRun, load
from convscope.run import Run
from convscope.show import Drawable

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Colour decorrelation for 3-channel images (Olah et al. 2017; the matrix is Lucid's, the square root of ImageNet's
# colour correlation): the optimiser works in decorrelated colours, so a step does not push red, green and blue
# apart independently, which fills the picture with saturated rainbow noise.
COLOUR_CORRELATION = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
COLOUR_CORRELATION /= COLOUR_CORRELATION.norm(dim=0).max()
STEPS = 128  # Adam steps: the pictures stop changing visibly at about 100 (fashion-fast and cifar runs here)
LEARNING_RATE = 0.05  # on the Fourier coefficients (Lucid's default)
MAX_FILTERS = 64


@dataclass(frozen=True)
class FilterPatterns(Drawable):
    layer: str
    filters: tuple[int, ...]
    images: np.ndarray  # uint8 N×H×W×C: one image per filter, the model's channels, in [0, 255]
    activation: np.ndarray  # float N: each filter's mean response to its own pattern
    noise_activation: np.ndarray  # float N: its mean response to uniform-noise images (the same size), for scale
    steps: int
    seconds: float

    def __repr__(self) -> str:
        return f"FilterPatterns({self.line()})"

    def figure(self):
        """The patterns as a sheet (patterns_figure)."""
        return patterns_figure(self, self.line())

    def line(self) -> str:
        gain = np.median(self.activation - self.noise_activation)
        return (
            f"{self.layer}: {len(self.filters)} patterns of {self.images.shape[1]}×{self.images.shape[2]} in "
            f"{self.steps} steps ({self.seconds:.1f} s); each filter's mean response to its pattern is "
            f"{gain:.3g} higher than to noise (median)"
        )


class _Reached(Exception):
    """Raised by the hook once the layer's output is kept: the rest of the network is not needed."""


def layer_output(model: torch.nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    """The response N×C×H×W of the module named `layer` (a spec layer such as conv2, or a module inside a pretrained
    base such as base1.net.blocks.15) to the batch `x`, running the network only as far as that layer.

    For a conv layer with an activation, the response before the activation (what Lucid's `…_pre_relu` objectives
    use): after a ReLU, many filters of a deep layer are 0 for the gray start image, and 0 has no gradient to climb
    (measured on a cifar-3conv run: conv3's patterns ended below noise without this)."""
    from convscope.layers import Conv2d

    modules = dict(model.named_modules())
    if layer not in modules or not layer:
        raise DataError(f"{model.spec.name}: no layer {layer!r}. Layers: {', '.join(model.spec.layer_names())}")
    kept: list[torch.Tensor] = []
    target = modules[layer]
    before_activation = isinstance(target, Conv2d) and not isinstance(target.activation, torch.nn.Identity)

    def keep(_module, inputs, output):
        kept.append(inputs[0] if before_activation else output)
        raise _Reached

    handle = (target.activation if before_activation else target).register_forward_hook(keep)
    top = layer.split(".")[0]
    try:
        model[: model.spec.layer_names().index(top) + 1](x)  # a slice: any input size the layers allow
    except _Reached:
        pass
    finally:
        handle.remove()
    if not kept or kept[0].ndim != 4:
        raise DataError(f"{model.spec.name}: {layer!r} has no feature maps (its output is a vector)")
    return kept[0]


def filter_patterns(
    run: LoadedRun | Run | str | Path,
    layer: str,
    filters: list[int] | None = None,
    steps: int = STEPS,
    size: int | None = None,
    seed: int = 0,
    device: str = "auto",
    first: int = 16,
) -> FilterPatterns:
    """One image per filter of `layer` (default filters: the `first` 16) that raises that filter's mean response, by
    `steps` steps of gradient ascent (see the module's docstring for the recipe and its sources), on `device`.

    `size`: the pictures' side in pixels (default: the run's input); a smaller one is faster, and any size the
    layers before `layer` allow is an image the network could be given. `run`: a run folder, or a LoadedRun (then
    optimised where it is loaded). Raises DataError for an unknown layer, a layer without feature maps, or filters
    it does not have.
    """
    loaded = load(run, device)
    with _frozen(loaded.model):
        return _ascend(loaded, layer, filters, steps, size, seed, first)


@contextmanager
def _frozen(model: torch.nn.Module) -> Iterator[None]:
    """The model's parameters without gradients while the images are optimised (a loaded run's network may be
    shared: each parameter's requires_grad is given back afterwards)."""
    wanted = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(model.parameters(), wanted, strict=True):
            p.requires_grad_(flag)


def _ascend(loaded: LoadedRun, layer: str, filters, steps: int, size: int | None, seed: int, first: int):
    """filter_patterns' gradient ascent, where the run is loaded, its network frozen (see filter_patterns)."""
    model, device, mean, std = loaded.model.train(False), loaded.device, loaded.mean, loaded.std
    h, w, c = loaded.input
    if size is not None:
        h = w = size
    probe = layer_output(model, layer, torch.zeros(1, c, h, w, device=device))
    channels = probe.shape[1]
    filters = list(range(min(first, channels))) if filters is None else list(filters)
    if not filters or len(filters) > MAX_FILTERS or not all(0 <= f < channels for f in filters):
        raise DataError(
            f"{layer} has filters 0 to {channels - 1}; choose 1 to {MAX_FILTERS} of them. Received {filters}"
        )
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    spectrum = _Spectrum(len(filters), c, h, w, generator, device)
    optimiser = torch.optim.Adam([spectrum.coefficients], lr=LEARNING_RATE)
    index = torch.tensor(filters, device=device)

    def responses(pixels: torch.Tensor, transform: bool) -> torch.Tensor:
        x = (pixels / 255 - mean) / std
        if transform:
            x = _jitter_scale_rotate(x, generator)
        maps = layer_output(model, layer, x)
        return maps[torch.arange(len(filters), device=device), index].mean(dim=(1, 2))  # each filter's own map

    for _ in range(steps):
        optimiser.zero_grad(set_to_none=True)
        (-responses(spectrum.pixels(), transform=True).sum()).backward()
        optimiser.step()
    with torch.no_grad():
        pixels = spectrum.pixels()
        own = responses(pixels, transform=False)
        noise = torch.rand(len(filters), c, h, w, generator=generator).to(device) * 255
        baseline = responses(noise, transform=False)
    images = pixels.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return FilterPatterns(
        layer, tuple(filters), images, own.cpu().numpy(), baseline.cpu().numpy(), steps, time.perf_counter() - started
    )


class _Spectrum:
    """N images of C×H×W as Fourier coefficients scaled by 1/frequency (Olah et al. 2017, Lucid's `fft_image`):
    pixels = 255·sigmoid(colours(irfft2(coefficients / frequency))), colours decorrelated for 3 channels. Small
    random coefficients: a gray image with a little noise, Chollet's start."""

    def __init__(self, n: int, c: int, h: int, w: int, generator: torch.Generator, device: torch.device):
        fy = torch.fft.fftfreq(h)[:, None]
        fx = torch.fft.rfftfreq(w)[None, :]
        frequency = torch.sqrt(fx**2 + fy**2).clamp(min=1.0 / max(h, w))
        self.scale = (1.0 / frequency).to(device) * math.sqrt(h * w) / max(h, w)  # comparable across sizes
        shape = (n, c, h, w // 2 + 1, 2)
        self.coefficients = (torch.randn(shape, generator=generator) * 0.01).to(device).requires_grad_(True)
        self.size = (h, w)

    def pixels(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.coefficients) * self.scale
        image = torch.fft.irfft2(spectrum, s=self.size, norm="ortho")
        if image.shape[1] == 3:
            image = torch.einsum("ij,njhw->nihw", COLOUR_CORRELATION.to(image.device), image)
        return torch.sigmoid(image) * 255


def _jitter_scale_rotate(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The batch shifted by up to 1/16 of its side, scaled by 0.95–1.05 and rotated by ±5° (one draw per image),
    resampled bilinearly with the border repeated: what Olah et al. call transformation robustness."""
    n, _, h, w = x.shape
    draw = torch.rand(n, 4, generator=generator).to(x.device)
    angle = (draw[:, 0] - 0.5) * math.radians(10)
    scale = 0.95 + draw[:, 1] * 0.1
    shift = (draw[:, 2:] - 0.5) * 2 / 8  # in [-1, 1] coordinates: ±1/16 of the side
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, [n, x.shape[1], h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def report_layers(model: torch.nn.Module) -> list[str]:
    """A middle and a deep layer whose patterns the report shows: of the network's own conv layers, the middle one
    and the last; with a pretrained base, the base's middle block and its last block."""

    if model.base is not None:
        names = {id(module): name for name, module in model.named_modules()}
        blocks = [names[id(block)] for block in model.base.blocks]
        return [blocks[len(blocks) // 2], blocks[-1]]
    convs = model.spec.conv_names()
    return list(dict.fromkeys([convs[(len(convs) - 1) // 2], convs[-1]])) if convs else []


def save_pattern_sheet(patterns: FilterPatterns, path: str | Path, title: str = "") -> Path:
    """patterns_figure saved as one PNG at `path` (folders made as needed); returns the path."""
    return patterns_figure(patterns, title).save(path)


def patterns_figure(patterns: FilterPatterns, title: str = "") -> Figure:
    """The patterns (uint8 N×H×W×C, gray or RGB) as one sheet (featuremaps.sheet_figure, as the filter and
    feature-map sheets), each tile labelled with its filter number and its mean response; `title` replaces the default.

    Returns a new matplotlib Figure with one axes per pattern (and a gray colorbar's for gray patterns)."""
    from convscope.inspect.featuremaps import sheet_figure

    labels = [f"{f}: {a:.3g}" for f, a in zip(patterns.filters, patterns.activation, strict=True)]
    title = title or f"{patterns.layer}: the pattern each filter responds to most (filter: its mean response)"
    if patterns.images.shape[3] == 3:  # colour tiles in [0, 1], no colour scale
        tiles = list(patterns.images / 255)
        return sheet_figure(tiles, labels, title, None, None, None, "")
    tiles = list(patterns.images[:, :, :, 0])
    return sheet_figure(tiles, labels, title, "gray", 0, 255, "pixel value")
