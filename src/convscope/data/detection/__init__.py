"""Detection datasets: YOLO, COCO and Pascal VOC folders read, linted and converted; box-aware augmentation;
the built-in fashion-scenes."""
