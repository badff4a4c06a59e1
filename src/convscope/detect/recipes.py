"""The settings a detector trains with when they are not given, the same from the CLI (`convscope detect train`) and
from Python (`convscope.train(model="scenes-det", data=...)`): TrainConfig.from_dict fills them in through
presets.preset_recipe, and given settings win. Pure data: nothing here imports the rest of convscope.
"""

from __future__ import annotations

# scenes-det, and any spec file ending in a detect layer: what the README's fashion-scenes measurement used (AdamW,
# one-cycle; lr 0.008 measured 0.843 / 0.661 mAP in 14 min against 0.841 / 0.644 at 0.004).
DETECTOR = {"epochs": 30, "batch_size": 32, "lr": 0.008}

# lite0-det: phase 1 trains the head on the frozen ImageNet base, phase 2 fine-tunes every block at a tenth of the
# rate (BCCD, README "Detection on real photos").
LITE0 = {
    "epochs": 15,
    "finetune_epochs": 40,
    "unfreeze_blocks": 11,
    "batch_size": 16,
    "lr": 0.008,
    "precision": "auto",
}

RECIPES: dict[str, dict] = {"scenes-det": DETECTOR, "lite0-det": LITE0}
