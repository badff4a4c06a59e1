"""Reading data safely: images, and (later) datasets."""
