"""Watch it learn: after each epoch the trainer saves the first conv layer's filters and one probe image's feature
maps at every conv layer of the spec, so the run page (and `run.filmstrip()`) can play them back with a slider.

RUN/filmstrip/
  probe.png           the probe image as the network sees it (H×W×C, before normalisation), saved once: the run's
                      first training image, a fixed choice that draws no random number
  epoch-0000.npz      the untrained network; epoch-0003.npz after 3 epochs, ... (numpy.savez_compressed, no pickle):
                        filters      float32 F×C×kh×kw: the first conv layer's weights (at most MOST_FILTERS filters of
                                     MOST_CHANNELS input channels)
                        layers       the conv layers' names (unicode array), shapes int L×3: each one's H×W×C output
                        maps_NAME    uint8 k×h×w: its first MOST_MAPS maps, each scaled from its own low..high to 0..255
                                     (shrunk by averaging to at most `side` pixels a side, side ≤ MAP_SIDE)
                        low_NAME, high_NAME   float32 k: those ranges, so map = low + uint8 / 255 · (high − low)

At most MOST_SNAPSHOTS snapshots are kept: a run of more epochs saves every `stride`-th (epoch 0 and the last always),
and a run extended by --resume thins its earlier snapshots to the same stride. A snapshot of cifar-3conv is about 20 kB.
The forward pass runs the network in inference mode on one image: no batchnorm statistics change, no random number is
drawn (dropout is off), so a resumed run stays bit-identical with or without it.
"""

from __future__ import annotations

import io
import logging
import math

import numpy as np
import torch
import torch.nn.functional as F

from convscope.errors import ConvscopeError, OutputError
from convscope.files import atomic_write_bytes
from convscope.preprocess import normalise, run_stats
from convscope.run import FILMSTRIP, FILMSTRIP_FILE, PROBE, Run, filmstrip_file
from convscope.training.checkpoints import resumable

log = logging.getLogger("convscope.train")

MOST_SNAPSHOTS = 60  # per run: the folder stays small however long the run
MOST_MAPS = 16  # feature maps kept per layer (its first ones)
MOST_FILTERS, MOST_CHANNELS = 64, 16  # of the first conv layer's weights
MAP_SIDE = 64  # pixels: a larger map is shrunk by averaging
MAPS_BUDGET = 512 * 1024  # bytes of maps per snapshot (before compression): many layers shrink their maps further


def stride(epochs: int) -> int:
    """Every how many epochs a run of `epochs` epochs saves a snapshot (1: every epoch)."""
    return max(1, math.ceil(epochs / (MOST_SNAPSHOTS - 2)))


def wanted(epoch: int, epochs: int) -> bool:
    """Whether the snapshot after `epoch` epochs (0: untrained) is kept in a run of `epochs` epochs."""
    return epoch in (0, epochs) or epoch % stride(epochs) == 0


class FilmstripWriter:
    """Saves the snapshots of one training (see the module's docstring). `probe`: uint8 C×H×W, the probe image.
    A network without conv layers of its own, or a probe it cannot take, saves nothing (said once in the log)."""

    def __init__(self, run: Run, probe: torch.Tensor | None, epochs: int):
        self.folder, self.epochs, self.probe = run.path / FILMSTRIP, epochs, probe
        self.names = run.spec.conv_names()
        self.mean, self.std = run_stats(run)
        h, w, c = run.spec.input
        self.enabled = bool(self.names) and probe is not None and tuple(probe.shape) == (c, h, w)
        if not self.enabled:
            why = "no conv layer of its own" if not self.names else "no probe image of its input's size"
            log.info("film strip: not saved (%s)", why)
        side = MAP_SIDE
        while side > 4 and len(self.names) * MOST_MAPS * side * side > MAPS_BUDGET:
            side //= 2
        self.side = side

    def snapshot(self, model: torch.nn.Module, epoch: int) -> None:
        """Save the snapshot after `epoch` epochs of `model` (the weights validation scores) when it is one to keep;
        thin out the earlier ones when the run was extended. OutputError when it cannot be written (a full disk)."""
        if not self.enabled or not wanted(epoch, self.epochs):
            return
        try:
            arrays = self._arrays(model, epoch)
        except (RuntimeError, ValueError, ConvscopeError) as err:  # a network it cannot follow: training goes on
            log.warning("film strip: not saved from epoch %d on (%s)", epoch, str(err).splitlines()[0][:200])
            self.enabled = False
            return
        try:
            if not (self.folder / PROBE).is_file():
                self._save_probe()
            atomic_write_bytes(self.folder / filmstrip_file(epoch), arrays)
            self._thin()
        except OutputError as err:  # a full disk stops the training as a checkpoint's write would
            raise resumable(err, self.folder.parent) from None

    def _save_probe(self) -> None:
        from PIL import Image

        from convscope.show import save_image

        image = self.probe.permute(1, 2, 0).numpy()
        save_image(Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image), self.folder / PROBE)

    @torch.no_grad()
    def _arrays(self, model: torch.nn.Module, epoch: int) -> bytes:
        device = next(model.parameters()).device
        was = model.training
        model.train(False)  # batchnorm reads its statistics, dropout is off: nothing changes, no random draw
        try:
            x = normalise(self.probe[None].to(device), self.mean.to(device), self.std.to(device))
            _, kept = model.forward_intermediates(x, self.names)
        finally:
            model.train(was)
        first = model.get_submodule(self.names[0]).weight
        arrays = {
            "epoch": np.array(epoch),
            "filters": first[:MOST_FILTERS, :MOST_CHANNELS].detach().float().cpu().numpy(),
            "layers": np.array(self.names),
            "shapes": np.array([(m.shape[2], m.shape[3], m.shape[1]) for m in kept.values()], dtype=np.int64),
        }
        for name, maps in kept.items():
            maps = maps[0, :MOST_MAPS].float()
            if max(maps.shape[1:]) > self.side:
                maps = F.adaptive_avg_pool2d(maps[None], [min(self.side, s) for s in maps.shape[1:]])[0]
            values = maps.cpu().numpy()
            low, high = values.min(axis=(1, 2)), values.max(axis=(1, 2))
            span = np.where(high > low, high - low, 1).astype(np.float32)
            arrays[f"maps_{name}"] = np.rint((values - low[:, None, None]) / span[:, None, None] * 255).astype(np.uint8)
            arrays[f"low_{name}"], arrays[f"high_{name}"] = low.astype(np.float32), high.astype(np.float32)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        return buffer.getvalue()

    def _thin(self) -> None:
        """Remove the snapshots a longer run no longer keeps (an extended run's stride grew)."""
        for path in self.folder.glob("epoch-*.npz"):
            found = FILMSTRIP_FILE.fullmatch(path.name)
            if found and not wanted(int(found[1]), self.epochs):
                try:
                    path.unlink()
                except OSError as err:
                    raise OutputError(f"{path}: cannot remove ({err.strerror})") from None
