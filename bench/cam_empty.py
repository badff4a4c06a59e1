"""How often a class activation map of the predicted class is all zero, per method and layer, for a trained run.

    .venv/bin/python bench/cam_empty.py RUN [--images 1000] [--layers activation3,conv3] [--threads T]

The maps come from pytorch-grad-cam (a dev dependency; convscope's own Grad-CAM and HiResCAM equal its maps, see
tests/inspect/test_gradcam_methods.py): Grad-CAM, HiResCAM, LayerCAM and Grad-CAM++ of the predicted class on the
first N test images of the run's data (Fashion-MNIST, MNIST) or a seeded random N of an image folder's test split.
A map is empty when no position is above 0. Default layers: convscope's default Grad-CAM layer. Results:
bench/results/cam_empty-RUNNAME.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402 (bench/ is not a package: scripts run as files)


def test_images(run, count: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 N×H×W×C test images at the model's input size, and their labels."""
    from convscope.data.load import load_dataset
    from convscope.loaded import model_images

    data = load_dataset(run.config.data, run.config.data_dir, run.spec.input, run.config.seed)
    images, labels = data.test.images, data.test.labels
    if run.config.data not in ("fashion-mnist", "mnist"):
        pick = np.sort(np.random.default_rng(0).permutation(len(images))[:count])
        images, labels = images[pick], labels[pick]
    return model_images(run, images[:count], data.name), labels[:count]


def main(argv=None) -> None:
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from convscope.inspect.gradcam import default_layer
    from convscope.loaded import load_model
    from convscope.preprocess import normalise, run_stats, to_tensor
    from convscope.run import load_run

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a run folder")
    p.add_argument("--images", type=int, default=1000, help="test images (default 1000)")
    p.add_argument("--layers", help="comma-separated layer names (default: the default Grad-CAM layer)")
    p.add_argument("--methods", default="GradCAM,HiResCAM,LayerCAM,GradCAMPlusPlus", help="pytorch-grad-cam classes")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    run = load_run(args.run)
    model = load_model(run)
    images, labels = test_images(run, args.images)
    x = normalise(to_tensor(images), *run_stats(run))
    with torch.inference_mode():
        predicted = torch.cat([model(x[i : i + 100]) for i in range(0, len(x), 100)]).argmax(1).numpy()
    right = predicted == labels
    layers = args.layers.split(",") if args.layers else [default_layer(run.spec)]
    print(f"{run.path}: {len(x)} test images, {right.mean():.1%} classified right (one pass, no mirror averaging)")
    rows = []
    for layer in layers:
        for method in (getattr(pytorch_grad_cam, name) for name in args.methods.split(",")):
            started, empty = time.perf_counter(), []
            with method(model=model, target_layers=[getattr(model, layer)]) as cam:
                for i in range(0, len(x), 25):
                    targets = [ClassifierOutputTarget(int(c)) for c in predicted[i : i + 25]]
                    maps = cam(input_tensor=x[i : i + 25], targets=targets)
                    empty += list(maps.reshape(len(maps), -1).max(1) <= 0)
            empty = np.array(empty)
            row = {
                "layer": layer,
                "method": method.__name__,
                "empty_share": float(empty.mean()),
                "empty_of_correct": int(empty[right].sum()),
                "correct": int(right.sum()),
                "ms_per_image": (time.perf_counter() - started) / len(x) * 1000,
            }
            rows.append(row)
            print(
                f"{layer:13s} {row['method']:16s} empty {row['empty_share']:6.1%}   of the correctly classified: "
                f"{row['empty_of_correct']}/{row['correct']}",
                flush=True,
            )
    facts = common.machine_facts(args.threads)
    path = common.write_json(f"cam_empty-{run.path.name}", {"machine": facts, "run": str(run.path), "rows": rows})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
