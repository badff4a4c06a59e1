"""Transfer learning: pretrained convnet bases and their ImageNet weights."""
