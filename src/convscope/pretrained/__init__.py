"""Pretrained convnets and transfer learning: the bases (catalog, EfficientNet-Lite0, torchvision/timm) and the two
phases of fine-tuning (finetune.py). Called as `convscope.transfer(...)` from Python, `convscope transfer` in a shell.

Deliberately empty of imports: `pretrained.catalog` is used by the torch-free shape arithmetic.
"""
