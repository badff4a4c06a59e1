"""Per-channel pixel statistics: exact, and computed in bounded memory whatever the image size."""

import tracemalloc

import numpy as np

from convscope.data.dataset import pixel_stats


def test_pixel_stats_are_the_float64_mean_and_std_in_bounded_memory():
    images = np.random.default_rng(0).integers(0, 256, (300, 224, 224, 3), dtype=np.uint8)  # 45 MB
    tracemalloc.start()
    try:
        mean, std = pixel_stats(images)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    x = images.reshape(-1, 3).astype(np.float64) / 255
    assert np.allclose(mean, x.mean(0), rtol=0, atol=1e-12) and np.allclose(std, x.std(0), rtol=0, atol=1e-9)
    # Chunks of ~4M values: ~100 MB at most. By 4096 images at a time, this took 2 × 361 MB (float64 and squares).
    assert peak < 150 * 2**20, f"pixel_stats allocated {peak / 2**20:.0f} MiB at its peak"
