"""Object detection: CenterNet-style targets and decoding, box-aware augmentation, COCO metrics."""
