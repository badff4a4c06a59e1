"""The settings a detector trains with when they are not given, the same from the CLI (`convscope detect train`) and
from Python (`convscope.train(model="scenes-det", data=...)`): TrainConfig.from_dict fills them in through
presets.preset_recipe, and given settings win. Pure data: nothing here imports the rest of convscope.
"""

from __future__ import annotations

# scenes-det, and any spec file ending in a detect layer: what the README's fashion-scenes measurement used (AdamW,
# one-cycle; lr 0.008 measured 0.843 / 0.661 mAP in 14 min against 0.841 / 0.644 at 0.004).
DETECTOR = {"epochs": 30, "batch_size": 32, "lr": 0.008}

# lite0-det: phase 1 trains the new layers on the frozen ImageNet base, phase 2 fine-tunes all 11 blocks at a tenth of
# the rate. Measured on BCCD at 416×416 (README, "Detection on real photos"): 12 + 36 epochs, test mAP@0.5 0.884 in
# 784 s of training; 15 + 30, 0.874 in 771 s; 15 + 40, 0.894 in 1,066 s (over 15 minutes). 320×320 gave 0.872. A
# validation (87 images) costs about half a training epoch, so only every 5th epoch is validated.
LITE0 = {
    "epochs": 12,
    "finetune_epochs": 36,
    "unfreeze_blocks": 11,
    "batch_size": 16,
    "lr": 0.008,
    "precision": "auto",
    "val_every": 5,
}

RECIPES: dict[str, dict] = {"scenes-det": DETECTOR, "lite0-det": LITE0}
