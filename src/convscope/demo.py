"""`make demo`: the main job — train a convnet on Fashion-MNIST, evaluate it, and predict images with it."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from convscope.cli import main as cli

RUN = Path("runs/demo")


def write_samples(folder: Path, count: int = 6) -> None:
    """A few Fashion-MNIST test images as PNG files, to predict like any image a user has."""
    from PIL import Image

    from convscope.data.idx import load_idx_dataset

    data = load_idx_dataset(None, "fashion-mnist")
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):  # the file name says the true class, to compare with the prediction
        name = data.classes[data.test.labels[i]].lower().replace("/", "-").replace(" ", "-")
        Image.fromarray(data.test.images[i, :, :, 0]).save(folder / f"test-{i}-{name}.png")


def main() -> int:
    if RUN.exists():  # the demo's own output from an earlier `make demo`
        shutil.rmtree(RUN)
    steps = [
        ["summary", "fashion-fast"],
        ["train", "--model", "fashion-fast", "--data", "fashion-mnist", "--out", str(RUN)],
        ["evaluate", str(RUN)],
        ["predict", str(RUN), str(RUN / "samples"), "chelsea"],
    ]
    for argv in steps:
        if argv[0] == "predict":
            write_samples(RUN / "samples")
        print(f"\n$ convscope {' '.join(argv)}", flush=True)
        status = cli(argv)
        if status:
            return status
    print(
        f"\nThe run's report (summary, curves, metrics, mistakes with their class activation maps, feature maps): "
        f"{RUN}/report.html\n"
        f"See inside: convscope featuremaps {RUN} chelsea · convscope gradcam {RUN} {RUN}/samples/test-4-shirt.png · "
        "convscope explain conv --png conv.png"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
