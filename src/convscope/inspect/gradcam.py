"""Class activation maps: where in the image the evidence for a class is, as the network sees it.

For a layer's feature maps A_k (k = 1..C, each h×w), the logit y_c of class c and G_k = ∂y_c/∂A_k:
    Grad-CAM (Selvaraju et al. 2017):  cam = ReLU(Σ_k mean(G_k) · A_k)   (one weight per map: the spatial mean)
    HiResCAM (Draelos & Carin 2020):   cam = ReLU(Σ_k G_k ⊙ A_k)         (position by position, no averaging)
then cam is upsampled bilinearly to the input's H×W and divided by its maximum, so 1 is the strongest evidence
in this image (the scale is relative: heatmaps of two images are not comparable).

The two agree exactly when a global average pool follows the layer (G_k is then the same at every position). They
differ for flatten + dense heads (fashion-fast): there each position has its own weights, and the averaged weights of
Grad-CAM can make every position's sum negative, an all-zero map even for the predicted class at 100% (measured on
fashion-fast's default layer: 28.5% of 1,000 test images). HiResCAM's map is then exactly each position's share of
the logit (Σ over positions = y_c minus the dense bias), and was never empty there (0 of 1,000). HiResCAM is the
default; `method="gradcam"` gives the original, `method="layercam"` LayerCAM. Cross-checked against pytorch-grad-cam
(tests/inspect).

Where the map is taken matters more than the method on photos: in a pointing game on real photos with boxes that no
training saw (bench/pointing_game.py: BCCD's white blood cells, a Lite0 "WBC in this square?" run), HiResCAM at a
Lite0 base's output (stride 32, 7×7 at 224 px) put its peak on the cell in 61 of 68 squares, 9 of its peaks on the
border; at the base's last stride-16 block (14×14) in 67 of 68, 1 on the border. That block is the default layer
of a Lite0 transfer network; fusing it with the output or averaging in the mirrored image's map scored 68 of 68.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from convscope.errors import DataError, SpecError
from convscope.inspect.cams import METHOD_NAMES, METHODS, activations_and_gradients, layer_map, upsampled
from convscope.loaded import load
from convscope.pretrained.catalog import lite0_cut
from convscope.shapes import infer
from convscope.show import Drawable
from convscope.spec import Activation, Base, Conv, NetSpec

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@dataclass(frozen=True)
class GradCam(Drawable):
    heatmap: np.ndarray  # float32 H×W in [0, 1], the input's size (all zeros: no positive evidence anywhere, `empty`)
    layer_map: np.ndarray  # float32 h×w, ReLU(Σ w_k A_k) at the layer's resolution, not rescaled
    class_index: int
    probability: float  # softmax probability of class_index for this image
    layer: str
    class_name: str = ""  # filled in when the class names are known (gradcam_for_run)
    image: np.ndarray | None = None  # uint8 H×W×C as the model took it (gradcam_for_run), for the picture
    method: str = "hirescam"  # one of METHODS

    def __repr__(self) -> str:
        return f"GradCam({self.summary()})"

    def figure(self) -> Figure:
        """The image, the heatmap and the overlay (gradcam_figure); needs `image` (set by the run's gradcam)."""
        if self.image is None:
            raise DataError("this map has no image to draw on: make it with Run.gradcam or gradcam_for_run")
        return gradcam_figure(self, self.image)

    @property
    def empty(self) -> bool:
        """True when the map is all zero: no position's features raise the class's score at this layer (all are
        zero, or every weighted sum Σ w_k A_k is ≤ 0), so there is no strongest place to point at."""
        return not bool(np.any(self.heatmap > 0))

    def strongest(self) -> tuple[int, int] | None:
        """(row, column) of the heatmap's peak, counting from 0 in the input's pixels; None when the map is empty."""
        if self.empty:
            return None
        row, col = divmod(int(self.heatmap.argmax()), self.heatmap.shape[1])
        return row, col

    def summary(self) -> str:
        """One line: 'light (probability 97.1%), HiResCAM at layer conv2: strongest at row 3, column 9 of the 28×28
        input', or, for an all-zero map, '…: nothing in layer conv2 raises the score of class light: the map is all
        zero'. Row and column count pixels of the image as the model took it (resized to its input)."""
        name = self.class_name or f"class {self.class_index}"
        head = f"{name} (probability {_percent(self.probability)}), {METHOD_NAMES[self.method]} at layer {self.layer}"
        peak = self.strongest()
        if peak is None:
            return f"{head}: nothing in layer {self.layer} raises the score of class {name}: the map is all zero"
        h, w = self.heatmap.shape
        return f"{head}: strongest at row {peak[0]}, column {peak[1]} of the {h}×{w} input"


def default_layer(spec: NetSpec) -> str:
    """The last feature-map layer before the network turns maps into a vector (flatten / global_pool).

    Among those, the last conv block's activation output is preferred (a conv with an activation, or an
    activation layer): it is the latest map with the most positions, whereas a pool after it halves the
    resolution and adds nothing Grad-CAM needs. When a block pools before its activation (fashion-fast:
    conv, pool, batchnorm, relu) that map is the pooled one: the raw conv output before it is larger, but its
    Grad-CAM lit up empty background in fashion-fast's mistakes, the activation's marks the garment.
    """
    spatial = []
    for info in infer(spec).layers:
        if len(info.output_shape) != 3:
            break
        spatial.append(info)
    if not spatial:
        raise DataError(f"{spec.name}: no layer outputs a feature map (H×W×C), so there is nothing to localise")
    activated = [
        i
        for i in spatial
        if (isinstance(i.layer, Conv) and i.layer.activation != "none")
        or (isinstance(i.layer, Activation) and i.layer.function != "none")
    ]
    convs = [i for i in spatial if isinstance(i.layer, Conv)]
    last = (activated or convs or spatial)[-1]
    if isinstance(last.layer, Base) and last.layer.arch == "efficientnet-lite0" and last.layer.stride in (None, 32):
        # A Lite0 base's own output is stride 32 (7×7 at 224 px): its peaks missed the object and sat on the image's
        # border; its last stride-16 block (14×14) pointed at it in 67 of 68 BCCD squares against 61 of 68 (the
        # pointing game, bench/pointing_game.py). Other bases: their blocks are known only once built.
        return f"{last.name}.block{lite0_cut(16)[0]}"
    return last.name


def spatial_layers(spec: NetSpec) -> list[str]:
    return [info.name for info in infer(spec).layers if len(info.output_shape) == 3]


def gradcam(
    model,
    x: torch.Tensor,
    layer: str | Sequence[str] | None = None,
    class_index: int | None = None,
    method: str = "hirescam",
    mirror: bool = False,
) -> GradCam:
    """The class activation map of one normalised image x (1×C×H×W) for `class_index` (default: the predicted
    class), by `method` ("hirescam", the default, "gradcam" or "layercam": see inspect/cams.py).

    `layer`: a layer with feature maps (default: default_layer), a base's inner layer ('base1.block11'), or several:
    their maps, each upsampled and divided by its maximum, are averaged (multi-layer fusion). `mirror`: the map of the
    mirrored image, mirrored back, is averaged in (test-time smoothing). Nothing stays registered on the model; it
    runs in eval mode (and goes back to the mode it was in), its parameters' requires_grad and .grad are left as they
    were.
    """
    spec = getattr(model, "spec", None)
    if spec is None:
        raise DataError("gradcam needs a convscope model (built from a spec, e.g. by load_model)")
    layers = [layer or default_layer(spec)] if layer is None or isinstance(layer, str) else list(layer)
    if not layers:
        raise DataError("layer: name at least one layer with feature maps")
    if method not in METHODS:
        raise DataError(f"method must be one of {', '.join(METHODS)}. Received: {method!r}")
    size = tuple(x.shape[2:])
    logits, chosen, pairs = activations_and_gradients(model, x, layers, class_index)
    with torch.no_grad():
        maps = [layer_map(*pairs[name], method) for name in layers]
        heatmap = torch.stack([upsampled(m, size) for m in maps]).mean(0)
        if mirror:
            _, _, flipped = activations_and_gradients(model, x.flip(-1), layers, chosen)
            back = [upsampled(layer_map(*flipped[name], method), size).flip(-1) for name in layers]
            heatmap = (heatmap + torch.stack(back).mean(0)) / 2
        peak = float(heatmap.max())
        heatmap = heatmap / peak if peak > 0 else torch.zeros_like(heatmap)
        probability = float(torch.softmax(logits[0], 0)[chosen])
    return GradCam(
        heatmap=heatmap.cpu().numpy().astype(np.float32),
        layer_map=maps[0].cpu().numpy().astype(np.float32),
        class_index=chosen,
        probability=probability,
        layer="+".join(layers),
        method=method,
    )


def gradcam_for_run(
    run,
    image_path,
    class_name: str | None = None,
    layer: str | None = None,
    method: str = "hirescam",
    device: str = "auto",
) -> GradCam:
    """The class activation map (`gradcam`) of an image file or sample photo name (any size and mode, converted as
    `predict` does; or what LoadedRun.fit takes) for a class named in the run (default: the predicted class),
    computed on `device`. `run`: a run folder, a convscope.run.Run, or a LoadedRun (then computed where it is)."""
    loaded = load(run, device)
    refuse_detector(loaded.run)
    classes = loaded.classes
    index = None if class_name is None else class_index(classes, class_name, loaded.run.path)
    picture = loaded.fit(image_path)
    result = gradcam(loaded.model, loaded.tensor(picture), layer=layer, class_index=index, method=method)
    return replace(result, class_name=classes[result.class_index], image=picture.array)


def refuse_detector(run) -> None:
    """SpecError for a detector's run (a convscope.run.Run): a class map explains one class score of the whole image,
    and a detector has one per position and box."""
    if run.spec.is_detector:
        raise SpecError(
            f"{run.path}: class maps (HiResCAM, Grad-CAM) are for classifiers; {run.spec.name} is a detector "
            "(see its boxes with `convscope detect predict`)"
        )


def class_index(classes: tuple[str, ...], name: str, where) -> int:
    """The index of the class `name` (exact, else the one class equal to it ignoring case). Raises DataError naming
    `where` (the run) and its classes."""
    folded = [c.casefold() for c in classes]
    if name not in classes and folded.count(str(name).casefold()) != 1:
        raise DataError(f"no class named {name!r} in {where}. Classes: {', '.join(classes)}")
    return classes.index(name) if name in classes else folded.index(name.casefold())


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """uint8 H×W×3: the image (gray or RGB, uint8 H×W×C or H×W) blended with the coloured heatmap (H×W, [0, 1])."""
    import matplotlib

    rgb = np.asarray(image, dtype=np.float32)
    rgb = rgb[:, :, None] if rgb.ndim == 2 else rgb
    rgb = np.repeat(rgb, 3, axis=2) if rgb.shape[2] == 1 else rgb[:, :, :3]
    if rgb.shape[:2] != heatmap.shape:
        raise DataError(f"image {rgb.shape[0]}×{rgb.shape[1]} and heatmap {heatmap.shape[0]}×{heatmap.shape[1]} differ")
    colour = matplotlib.colormaps[cmap](np.clip(heatmap, 0, 1))[:, :, :3] * 255
    return np.clip((1 - alpha) * rgb + alpha * colour, 0, 255).round().astype(np.uint8)


def gradcam_figure(result: GradCam, image: np.ndarray, title: str = "") -> Figure:
    """Three panels: the image as the model takes it (uint8 H×W×C, gray or RGB, or H×W), the heatmap (H×W, jet,
    0…1) with its colorbar, and the heatmap laid over the image (`overlay`); the suptitle names the method, class,
    probability and layer, under `title` if given.

    Returns a new matplotlib Figure (12.5×4.8 inches, 100 dpi) with four axes: the three panels and the colorbar.
    Raises DataError if the image and the heatmap differ in size.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    from convscope.show import Picture

    image = np.asarray(image)
    gray = image.ndim == 2 or image.shape[2] == 1
    shown = image.reshape(image.shape[:2]) if gray else image
    h, w = result.heatmap.shape
    fig = Picture(figsize=(12.5, 4.8), dpi=100, layout="constrained")
    axes = fig.subplots(1, 3)
    axes[0].imshow(shown, cmap="gray" if gray else None, vmin=0, vmax=255, interpolation="nearest")
    axes[0].set_title(f"input {h}×{w}", fontsize=11)
    axes[1].imshow(result.heatmap, cmap="jet", vmin=0, vmax=1, interpolation="nearest")
    lh, lw = result.layer_map.shape
    empty = "\n(all zero: nothing in the map raises this class)" if result.empty else ""
    axes[1].set_title(f"heatmap: {result.layer} map {lh}×{lw}, upsampled{empty}", fontsize=11)
    axes[2].imshow(overlay(image, result.heatmap), interpolation="nearest")
    axes[2].set_title("overlay (alpha 0.5)", fontsize=11)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    bar = fig.colorbar(ScalarMappable(Normalize(0, 1), "jet"), ax=axes[1:], fraction=0.046, pad=0.02)
    method = METHOD_NAMES[result.method]
    bar.set_label(f"{method} (relative)")
    name = result.class_name or f"class {result.class_index}"
    what = f"{method} for '{name}' (probability {_percent(result.probability)}) at layer {result.layer}"
    fig.suptitle(f"{title}\n{what}" if title else what, fontsize=13)
    return fig


def save_gradcam_png(result: GradCam, image: np.ndarray, path: str | Path, title: str = "") -> Path:
    """gradcam_figure saved as a PNG at `path` (folders made as needed); returns the path."""
    return gradcam_figure(result, image, title).save(path)


def _percent(p: float) -> str:
    """0.9999995 -> '> 99.99%', 3e-7 -> '< 0.01%': the two-decimal form would print 100.00% and 0.00%."""
    return "> 99.99%" if 0.9999 < p < 1 else "< 0.01%" if 0 < p < 0.0001 else f"{p:.2%}"
