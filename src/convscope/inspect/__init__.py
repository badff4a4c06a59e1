"""See inside a convnet: feature maps, filters, top activations, Grad-CAM, the run report."""
