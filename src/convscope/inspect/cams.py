"""What class activation maps are made of: a layer's feature maps A (C×h×w) and the gradient G = ∂y_c/∂A of one class's
logit, for one or several layers in one forward and one backward pass, and the map each method makes of them.

    Grad-CAM (Selvaraju et al. 2017):  ReLU(Σ_k mean(G_k) · A_k)     one weight per map: the spatial mean
    HiResCAM (Draelos & Carin 2020):   ReLU(Σ_k G_k ⊙ A_k)           each position's own gradient
    LayerCAM (Jiang et al. 2021):      ReLU(Σ_k ReLU(G_k) ⊙ A_k)     only the positive gradients, position by position

A layer is one of the spec's layers with a feature map or, in a transfer network, one of its base's inner layers
('base1.stem', 'base1.block1', … as featuremaps.map_layers lists them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from convscope.errors import DataError
from convscope.inspect.featuremaps import map_layers

METHODS = ("hirescam", "gradcam", "layercam")
METHOD_NAMES = {"hirescam": "HiResCAM", "gradcam": "Grad-CAM", "layercam": "LayerCAM"}


def activations_and_gradients(
    model, x: torch.Tensor, layers: list[str], class_index: int | None = None
) -> tuple[torch.Tensor, int, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """(logits 1×classes, the class used, {layer: (A, G)} with A and G C×h×w) for one normalised image x (1×C×H×W)
    and `class_index` (default: the predicted class).

    The forward pass is the model's own, child by child. The earliest chosen layer's output is detached and made a leaf
    that requires grad, so the gradient stops there and no parameter's .grad is touched; later chosen layers are kept
    as they are (the gradient flows through them to the leaf). A base's inner layers are caught by forward hooks,
    removed before this returns. The model runs in eval mode and goes back to the mode it was in.
    """
    order = map_layers(model)
    for name in layers:
        if name not in order:
            raise DataError(
                f"{model.spec.name}: a class map needs a layer with a feature map; {name!r} is not one. Choose from: "
                + ", ".join(order)
            )
    if x.ndim != 4 or x.shape[0] != 1:
        raise DataError(f"a class map takes one image, a tensor 1×C×H×W. Received {tuple(x.shape)}")
    first = min(layers, key=order.index)
    kept: dict[str, torch.Tensor] = {}

    def keep(name: str, out: torch.Tensor) -> torch.Tensor:
        if name == first:
            out = out.detach().requires_grad_(True)  # a leaf: the gradient stops here
        kept[name] = out
        return out

    was_training = model.training
    model.train(False)
    hooks = _inner_hooks(model, [name for name in layers if "." in name], keep)
    try:
        with torch.inference_mode(False), torch.enable_grad():
            h = x.detach().clone().float()
            model.check_input(h)
            for name, module in model.named_children():
                h = module(h)
                if name in layers:
                    h = keep(name, h)
            logits = h
            classes = logits.shape[1]
            chosen = int(logits.argmax(1)) if class_index is None else class_index
            if not 0 <= chosen < classes:
                raise DataError(f"class_index must be in 0..{classes - 1}. Received: {class_index}")
            names = list(kept)
            grads = torch.autograd.grad(logits[0, chosen], [kept[n] for n in names])
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    pairs = {n: (kept[n][0].detach(), g[0].detach()) for n, g in zip(names, grads, strict=True)}
    return logits.detach(), chosen, pairs


def _inner_hooks(model, names: list[str], keep) -> list:
    """Forward hooks on a base's stem (the input of block 1) and blocks that pass their output through `keep`."""
    hooks = []
    for name in names:
        part, blocks = name.split(".", 1)[1], model.base.blocks
        if part == "stem":
            hooks.append(blocks[0].register_forward_pre_hook(lambda _m, args, n=name: (keep(n, args[0]),)))
        else:
            module = blocks[int(part.removeprefix("block")) - 1]
            hooks.append(module.register_forward_hook(lambda _m, _a, out, n=name: keep(n, out)))
    return hooks


def layer_map(a: torch.Tensor, g: torch.Tensor, method: str) -> torch.Tensor:
    """The h×w map of feature maps a and gradients g (C×h×w) by `method` (one of METHODS), ReLU'd, not rescaled."""
    if method == "gradcam":
        return torch.relu(torch.einsum("c,chw->hw", g.mean(dim=(1, 2)), a))
    if method == "hirescam":
        return torch.relu((g * a).sum(0))
    if method == "layercam":
        return torch.relu((torch.relu(g) * a).sum(0))
    raise DataError(f"method must be one of {', '.join(METHODS)}. Received: {method!r}")


def upsampled(cam: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """An h×w map upsampled bilinearly to `size` (H, W) and divided by its maximum (all zeros stay zeros)."""
    up = F.interpolate(cam[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
    peak = float(up.max())
    return up / peak if peak > 0 else torch.zeros_like(up)
