"""Recipes: the training settings a model comes with when they are not given, the same from the CLI and from Python
(`convscope.train(model="cifar-fast", ...)`): TrainConfig.from_dict fills them in through presets.preset_recipe, and
given settings win. Pure data: nothing here imports the rest of convscope.
"""

from __future__ import annotations

# scenes-det, and any spec file ending in a detect layer: what the README's fashion-scenes measurement used (AdamW,
# one-cycle; lr 0.008 measured 0.843 / 0.661 mAP in 14 min against 0.841 / 0.644 at 0.004).
DETECTOR = {"epochs": 30, "batch_size": 32, "lr": 0.008}
# scenes-det itself also takes its input size from the data's box sizes (convscope.detect.data_recipe; fashion-scenes
# keeps 128): a spec file's input is the user's own.
SCENES = {**DETECTOR, "from_data": "image_size"}

# lite0-det: phase 1 trains the new layers on the frozen ImageNet base, phase 2 fine-tunes all 11 blocks at a tenth of
# the rate. Measured on BCCD at 416×416 (README, "Detection on real photos"): 12 + 36 epochs, test mAP@0.5 0.884 in
# 784 s of training; 15 + 30, 0.874 in 771 s; 15 + 40, 0.894 in 1,066 s (over 15 minutes). 320×320 gave 0.872. A
# validation (87 images) costs about half a training epoch, so only every 5th epoch is validated. cache_features: phase
# 1 runs the frozen base once per image and its mirror image (detect/cache.py; no scale augmentation in phase 1); on
# a loaded 2-core AVX2 CPU without bf16 a phase-1 epoch took 45–70 s on the cache against 86 s without (README).
LITE0 = {
    "epochs": 12,
    "finetune_epochs": 36,
    "unfreeze_blocks": 11,
    "batch_size": 16,
    "lr": 0.008,
    "precision": "auto",
    "val_every": 5,
    "cache_features": True,
    # chosen when a run starts from the training split (convscope.detect.data_recipe), unless given: the input size
    # from the smallest common box, the epochs from the number of images (BCCD's 205 at 416 keep 12 + 36).
    "from_data": "image_size,epochs,finetune_epochs",
}

# cifar-fast: the airbench-style recipe the README's CIFAR-10 figures were measured with.
CIFAR_FAST = {
    "epochs": 14,
    "batch_size": 256,
    "optimizer": "sgd",
    "lr": 0.2,
    "label_smoothing": 0.2,
    "augment": "flip,translate=2",
    "val_fraction": 0.02,
    "precision": "auto",
}

# transfer (convscope transfer / convscope.transfer): a pretrained base under a new head, then fine-tuned.
# No mirror test-time augmentation by default: the test pass through the base is most of a transfer run's time.
TRANSFER = {"epochs": 5, "batch_size": 32, "lr": 1e-3, "augment": "flip", "tta_flip": False, "unfreeze_blocks": 4}

RECIPES: dict[str, dict] = {"cifar-fast": CIFAR_FAST, "scenes-det": SCENES, "lite0-det": LITE0}
